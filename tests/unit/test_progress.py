"""The progress model: shares done, the time left, totals that grow and then are known."""

from __future__ import annotations

import threading

import pytest

from drplan.progress import Progress


class FakeClock:
    """Seconds as the test sets them: the model reads time, it never waits."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_share_and_time_left_by_bytes() -> None:
    clock = FakeClock()
    progress = Progress(clock)
    progress.set_totals(10, 1000)
    clock.now += 30
    progress.done(2, 250)
    status = progress.status()
    assert status.fraction == 0.25
    assert status.elapsed == 30
    assert status.seconds_remaining == pytest.approx(90)
    assert status.bytes_per_second == pytest.approx(250 / 30)


def test_by_items_when_there_are_no_bytes() -> None:
    progress = Progress(FakeClock())
    progress.set_totals(4, 0)
    progress.done(1)
    assert progress.status().fraction == 0.25


def test_no_time_left_is_promised_while_the_scan_still_finds_more() -> None:
    clock = FakeClock()
    progress = Progress(clock)
    progress.found(10, 1000)
    clock.now += 5
    progress.done(5, 500)
    assert progress.status().fraction == 0.5
    assert progress.status().seconds_remaining is None
    progress.totals_complete()
    assert progress.status().seconds_remaining == pytest.approx(5)


def test_while_the_scan_is_behind_the_total_is_at_least_what_is_done() -> None:
    progress = Progress(FakeClock())
    progress.found(10, 1000)
    progress.done(30, 5000)  # unchanged files go faster than the scan
    status = progress.status()
    assert (status.items_total, status.bytes_total) == (30, 5000)
    assert status.fraction < 1
    assert status.seconds_remaining is None


def test_not_100_percent_until_finished() -> None:
    progress = Progress(FakeClock())
    progress.set_totals(1, 100)
    progress.done(1, 150)  # the file grew after the scan
    assert progress.status().fraction < 1
    progress.finish()
    status = progress.status()
    assert status.fraction == 1.0
    assert status.seconds_remaining == 0
    assert (status.items_total, status.bytes_total) == (1, 150)  # what was done is the whole


def test_nothing_known_is_zero_percent_not_an_error() -> None:
    status = Progress(FakeClock()).status()
    assert status.fraction == 0.0
    assert status.seconds_remaining is None
    assert status.bytes_per_second == 0.0


def test_counts_from_many_threads_add_up() -> None:
    progress = Progress()

    def work() -> None:
        for _ in range(10_000):
            progress.done(1, 3)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    status = progress.status()
    assert (status.items_done, status.bytes_done) == (40_000, 120_000)
