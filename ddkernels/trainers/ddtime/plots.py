"""DDTime's plot: the synthetic sets."""
from ddkernels.trainers._common import new_figure, save_figure


def _plot(path, sets, columns, seq_len):
    """The sets' last column as a grid of small plots; returns the path, or None without matplotlib."""
    names = list(sets)
    samples = sets[names[0]].shape[0]
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
    fig.suptitle(f"synthetic sets, column {columns[column]} (input | target)")
    return save_figure(fig, path, dpi=110)
