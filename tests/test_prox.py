import torch

from rdcae.model.prox import prox_l21


def test_prox_zeroes_groups_below_lambda():
    S = torch.zeros(3, 1, 4, 4)
    S[0, 0, 0, 0] = 1.5  # norm 1.5 < λ
    S[1, 0, :2, :2] = 0.5  # norm 1.0 < λ
    S[2, 0, 0, :2] = torch.tensor([3.0, 4.0])  # norm 5 > λ
    out = prox_l21(S, lambda_=1.6)
    assert torch.all(out[0] == 0) and torch.all(out[1] == 0)
    assert out[2].norm() > 0


def test_prox_keeps_direction_and_removes_exactly_lambda_of_norm():
    g = torch.Generator().manual_seed(0)
    S = torch.randn(16, 3, 8, 8, generator=g) * 2
    lam = 1.6
    out = prox_l21(S, lam)
    norms_in, norms_out = S.flatten(1).norm(dim=1), out.flatten(1).norm(dim=1)
    assert torch.all(norms_in > lam)
    torch.testing.assert_close(norms_out, norms_in - lam)
    cosine = torch.nn.functional.cosine_similarity(S.flatten(1), out.flatten(1))
    torch.testing.assert_close(cosine, torch.ones(16))


def test_prox_treats_each_sample_as_one_group():
    S = torch.zeros(2, 1, 2, 2)
    S[0] = 1.0  # norm 2: survives λ = 1.6 as a whole
    S[1, 0, 0, 0] = 1.0  # norm 1: removed as a whole
    out = prox_l21(S, 1.6)
    assert torch.all(out[0] != 0)
    assert torch.all(out[1] == 0)


def test_prox_of_zero_is_zero_without_nan():
    out = prox_l21(torch.zeros(4, 3, 8, 8), 1.6)
    assert torch.isfinite(out).all() and torch.all(out == 0)


def test_the_s_update_reusing_the_reconstruction_of_x_gives_the_s_of_a_full_pass():
    from rdcae.model.robust import RobustAutoencoder

    torch.manual_seed(0)
    X = torch.rand(40, 1, 8, 8)
    module = RobustAutoencoder(n_train=40, network={"channels": 1, "patch_size": 8, "filters": [4, 4, 4],
                                                    "latent_dim": 8}, channels_last=False)
    module.net.fit_normalization(X)
    module.eval()
    module.hparams.lambda_ = float((X - module.reconstruct(X)).flatten(1).norm(dim=1).median())  # some in S, some not
    module.S[::3] = torch.rand(14, 1, 8, 8) * 0.5  # S holds every third sample: X − S differs from X there
    full = module.S.clone()
    module.update_S(X)  # S ← prox(X − D(E(X − S))), every sample reconstructed again
    full, module.S[:] = module.S.clone(), full
    module.update_S(X, X_hat=module.reconstruct(X))  # D(E(X)) reused where S is zero
    torch.testing.assert_close(module.S, full)
    assert module.S.flatten(1).norm(dim=1).gt(0).any() and module.S.flatten(1).norm(dim=1).eq(0).any()
