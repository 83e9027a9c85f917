"""DDTime's plot: the synthetic sets."""
from ddkernels.trainers._common import new_figure, save_figure

# the most samples of each set plotted (a panel each): a set of 1000 samples made a figure of 4000 panels that
# took longer to draw than the distillation
PLOT_SAMPLES = 8


def _plot(path, sets, columns, seq_len):
    """The sets' last column as a grid of small plots, the first PLOT_SAMPLES samples of each; returns the path, or
    None without matplotlib."""
    names = list(sets)
    total = sets[names[0]].shape[0]
    samples = min(total, PLOT_SAMPLES)
    fig = new_figure(figsize=(3 * samples, 2.2 * len(names)))
    if fig is None:
        return None
    column = len(columns) - 1
    axes = fig.subplots(len(names), samples, sharey=True, squeeze=False)
    for row, name in enumerate(names):
        for s in range(samples):
            ax = axes[row][s]
            ax.plot(sets[name][s, column].cpu())
            ax.axvline(seq_len, color="grey", linewidth=0.8)
            ax.set_title(f"{name} {s}", fontsize=9)
    shown = f", the first {samples} of {total} samples" if samples < total else ""
    fig.suptitle(f"synthetic sets, column {columns[column]} (input | target){shown}")
    return save_figure(fig, path, dpi=110)
