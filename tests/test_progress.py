"""Progress reports in logs: where stderr is not a terminal, one line per epoch (or trial), no '\\r'."""
from __future__ import annotations

import io

from lgn_nas.progress import LineProgress, progress_bar
from lgn_nas.train import TrainConfig, fit


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_line_progress_prints_one_line_per_close_or_refresh():
    stream = io.StringIO()
    bar = progress_bar(total=4, desc="epoch 1/2", unit="step", file=stream)
    assert isinstance(bar, LineProgress)
    for step in range(4):
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (step + 1):.4f}", refresh=False)
    bar.close()
    bar.close()  # closing twice prints nothing more
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("epoch 1/2: 4/4 steps, loss=0.2500 (")
    trials = progress_bar(total=3, initial=1, desc="search s", unit="trial", file=stream)
    trials.n = 2
    trials.set_postfix(best_acc="91.00%", refresh=False)
    trials.refresh()
    trials.close()  # nothing changed since the last line
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("search s: 2/3 trials, best_acc=91.00% (")
    assert "\r" not in stream.getvalue()


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm.auto import tqdm

    bar = progress_bar(total=2, desc="epoch 1/1", unit="step", file=_Terminal())
    try:
        assert isinstance(bar, tqdm)
    finally:
        bar.close()


def test_training_in_a_log_prints_one_line_per_epoch(capsys, mnist):
    config = TrainConfig(model="lgn_dense_s", model_kwargs=dict(depth=2, width=200, init="gaussian", group_tau=3.0,
                                                                backend="torch"),
                         dataset="mnist", val_size=1000, limit_train=300, limit_test=200, epochs=3, batch_size=50,
                         lr=0.05)
    fit(config, data=mnist, progress=True, plot=False)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"], err
    assert all(" 6/6 steps, loss=" in line and "acc=" in line for line in lines), lines
