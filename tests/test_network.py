import pytest
import torch

from rdcae.model.network import ConvAutoencoder, NetworkSpec
from rdcae.model.score import anomaly_score, reconstruction_error


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("patch_size", [32, 64])
def test_autoencoder_maps_patches_to_patches_through_a_256d_latent(channels, patch_size):
    net = ConvAutoencoder(NetworkSpec(channels=channels, patch_size=patch_size))
    x = torch.rand(5, channels, patch_size, patch_size)
    assert net.encode(x).shape == (5, 256)
    assert net(x).shape == x.shape


def test_sigmoid_head_answers_in_the_pixel_range():
    net = ConvAutoencoder(NetworkSpec(channels=1, patch_size=32, normalize=False, output="sigmoid"))
    y = net(torch.rand(4, 1, 32, 32) * 10)
    assert y.min() >= 0 and y.max() <= 1


def test_normalization_is_taken_from_the_training_set_and_kept_in_the_state_dict():
    net = ConvAutoencoder(NetworkSpec(channels=3, patch_size=32))
    x = 0.4 + 0.05 * torch.randn(64, 3, 32, 32)
    net.fit_normalization(x)
    state = net.state_dict()
    torch.testing.assert_close(state["pixel_mean"].flatten(), x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(state["pixel_std"].flatten(), x.std(dim=(0, 2, 3)))
    other = ConvAutoencoder(NetworkSpec(channels=3, patch_size=32))
    other.load_state_dict(state)
    torch.testing.assert_close(other(x[:4]), net(x[:4]))


def test_encoder_has_the_three_lenet_style_modules_of_section_4_1():
    net = ConvAutoencoder(NetworkSpec(channels=3, patch_size=32))
    convs = [m for m in net.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.encoder) == 3
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in net.encoder) == 3


@pytest.mark.parametrize("bf16", [False, True])
def test_without_gradients_the_encoder_pools_first_and_answers_the_same_to_the_bit(bf16):
    net = ConvAutoencoder(NetworkSpec(channels=3, patch_size=32))
    net.fit_normalization(torch.rand(64, 3, 32, 32))
    x = torch.rand(16, 3, 32, 32)
    seen = []  # the size of what each LeakyReLU of the encoder takes
    for m in net.encoder:
        if isinstance(m, torch.nn.LeakyReLU):
            m.register_forward_hook(lambda _, args, out: seen.append(tuple(args[0].shape[2:])))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        trained_order = net.encode(x.requires_grad_())
        assert seen == [(32, 32), (16, 16), (8, 8)]
        seen.clear()
        with torch.no_grad():
            pooled_first = net.encode(x)
        assert seen == [(16, 16), (8, 8), (4, 4)]  # the activation on a quarter of the pixels
    assert torch.equal(trained_order.detach(), pooled_first)


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_without_gradients_the_decoder_convolves_the_coarse_grid_into_four_phases_with_the_same_sums(kernel_size):
    torch.manual_seed(0)
    net = ConvAutoencoder(NetworkSpec(channels=3, patch_size=32, kernel_size=kernel_size))
    for m in net.decoder:  # biases that differ per channel: each channel's four phases must carry its own
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.bias)
    upsampled = []
    for m in net.decoder:
        if isinstance(m, torch.nn.Upsample):
            m.register_forward_hook(lambda *_: upsampled.append(1))
    z = torch.randn(16, 256)
    written = net.decoder(z)  # with gradients: the layers as written
    assert len(upsampled) == 3
    upsampled.clear()
    with torch.no_grad():
        fused = net.decoder(z)
        assert not upsampled  # no upsampling ran
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fused_bf16, written_bf16 = net.decoder(z).float(), torch.nn.Sequential.forward(net.decoder, z).float()
    assert torch.allclose(fused, written.detach(), rtol=1e-5, atol=1e-5)
    # in bf16 as close to the fp32 sums as the written order is
    assert (fused_bf16 - fused).abs().max() < 2 * (written_bf16 - fused).abs().max()


def test_an_activation_that_can_decrease_keeps_its_place_before_the_pool():
    net = ConvAutoencoder(NetworkSpec(channels=1, patch_size=32, negative_slope=-0.5))
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.encoder(x), torch.nn.Sequential(*net.encoder)(x))


def test_patch_size_not_divisible_by_8_is_rejected():
    with pytest.raises(ValueError, match="patch_size=36"):
        ConvAutoencoder(NetworkSpec(channels=1, patch_size=36))


def test_reconstruction_error_is_the_l2_norm_per_patch():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.zeros(2, 1, 2, 2)
    x_hat[1] = 0.5  # four pixels off by 0.5 -> norm 1
    torch.testing.assert_close(reconstruction_error(x, x_hat), torch.tensor([0.0, 1.0]))


def test_strip_score_is_the_norm_of_the_worst_run_of_rows_or_columns():
    x = torch.zeros(3, 2, 16, 16)
    r = torch.zeros_like(x)
    r[0, :, 5, :] = 0.5                      # a one-pixel line along the rows: all of it in one strip
    r[1, 1, :, 9:11] = 0.3                   # a two-pixel line along the columns
    r[2] = 0.1                               # residual spread over the whole patch
    norm = reconstruction_error(x + r, x)
    strip = anomaly_score(x + r, x, "strip", width=2)
    torch.testing.assert_close(strip[:2], norm[:2])
    torch.testing.assert_close(strip[2], norm[2] * (2 / 16) ** 0.5)
    torch.testing.assert_close(anomaly_score(x + r, x, "strip", width=16), norm)
    torch.testing.assert_close(anomaly_score(x + r, x, "norm"), norm)
    with pytest.raises(ValueError, match="model.score='max'"):
        anomaly_score(x, x, "max")
    with pytest.raises(ValueError, match="score_width=17"):
        anomaly_score(x, x, "strip", width=17)


def test_the_decoders_phase_weights_follow_an_optimizer_step_and_a_load():
    torch.manual_seed(0)
    net = ConvAutoencoder(NetworkSpec(channels=1, patch_size=16, filters=(4, 8), latent_dim=8))
    z = torch.randn(4, 8)

    def agree() -> bool:
        with torch.no_grad():
            return torch.allclose(net.decoder(z), torch.nn.Sequential.forward(net.decoder, z), atol=1e-5)

    assert agree()
    for optimizer in (torch.optim.SGD(net.parameters(), lr=1.0),
                      torch.optim.Adam(net.parameters(), lr=0.1, fused=True)):  # fused: no new tensor version
        net.decoder(z).square().sum().backward()
        optimizer.step()  # the weights change in place
        assert agree()
    other = ConvAutoencoder(NetworkSpec(channels=1, patch_size=16, filters=(4, 8), latent_dim=8))
    net.load_state_dict(other.state_dict())
    assert agree()


def test_a_slice_of_the_encoder_or_the_decoder_runs_all_of_its_layers():
    net = ConvAutoencoder(NetworkSpec(channels=1, patch_size=16, filters=(4, 8), latent_dim=8))
    x, z = torch.rand(2, 1, 16, 16), torch.randn(2, 8)
    with torch.no_grad():
        for part, given in ((net.encoder, x), (net.decoder, z)):
            head = part[:5]
            assert type(head) is type(part)
            assert torch.allclose(head(given), torch.nn.Sequential(*list(part)[:5])(given), atol=1e-6)
