"""What the run's pictures say."""


def test_figures_name_the_score_the_run_used_on_their_axis():
    import torch

    from rdcae.results.figures import error_ssim_figure, score_histogram, score_label

    assert "‖x − D(E(x))‖₂" in score_label("norm", 4) and "worst 2 rows or columns" in score_label("strip", 2)
    scores = {"normal": torch.rand(20), "defect": torch.rand(5) + 1}
    histogram = score_histogram(scores, 1.0, "t", xlabel=score_label("strip", 2))
    ssim = error_ssim_figure(torch.rand(4), torch.rand(4), torch.tensor([0, 0, 1, 1]), torch.rand(4), torch.rand(4),
                             torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 1, 0]), xlabel=score_label("strip", 2))
    assert [f.axes[0].get_xlabel() for f in (histogram, ssim)] == [score_label("strip", 2)] * 2


def test_detection_figures_name_the_folder_where_two_defect_images_share_a_name(tmp_path):
    import numpy as np

    from rdcae.data.sources import SourceImage
    from rdcae.inference.detector import Detector
    from rdcae.model.network import ConvAutoencoder, NetworkSpec
    from rdcae.results.figures import write_detection_figures

    class Writer:
        def add_image(self, *args, **kwargs):
            pass

    rng = np.random.default_rng(0)
    net = ConvAutoencoder(NetworkSpec(channels=1, patch_size=32, filters=(8, 16, 32), latent_dim=16)).eval()
    detector = Detector(net, 1.0, {"dataset": {"exclude_background": False}})
    mask = np.zeros((64, 64), bool)
    mask[10:20, 10:20] = True
    sources = [SourceImage(f"/data/test/{name}", rng.integers(0, 255, (64, 64, 1), np.uint8), "defect", mask=mask)
               for name in ("crack/007.png", "hole/007.png", "hole/012.png")]
    paths = write_detection_figures(detector, sources, Writer(), tmp_path, step=0)
    assert sorted(p.name for p in paths) == ["detect_0_crack_007.png", "detect_1_hole_007.png", "detect_2_012.png"]
