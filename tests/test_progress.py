import logging

from cryptomed.progress import Progress, bar, progress


def test_bar():
    assert bar(0, 10, 10) == "[..........]" and bar(5, 10, 10) == "[#####.....]" and bar(10, 10, 10) == "[##########]"


def test_progress_logs_every_step_and_the_end(caplog):
    caplog.set_level(logging.INFO, logger="cryptomed")
    assert list(progress(range(25), 25, "work", step=0.2)) == list(range(25))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5  # at 5, 10, 15, 20, 25
    assert lines[0].startswith("work [####................]  20% 5/25 images") and "eta" in lines[0]
    assert "100% 25/25" in lines[-1] and "took" in lines[-1]


def test_progress_in_chunks_logs_once_per_crossed_step(caplog):
    caplog.set_level(logging.INFO, logger="cryptomed")
    p = Progress(100, "spans", step=0.25, unit="records")
    for n in (10, 60, 30):
        p.advance(n)
    assert [r.getMessage().split()[2] for r in caplog.records] == ["70%", "100%"]
