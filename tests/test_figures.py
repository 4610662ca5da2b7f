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
