from worker.media.progress import ProgressParser


def feed_block(parser: ProgressParser, *lines: str) -> list[float | None]:
    return [parser.feed(line) for line in lines]


def test_only_block_ends_yield_a_value() -> None:
    parser = ProgressParser(duration_seconds=10)

    results = feed_block(
        parser,
        "frame=25\n",
        "fps=0.00\n",
        "out_time_us=2500000\n",
        "out_time=00:00:02.500000\n",
        "speed=5.0x\n",
        "progress=continue\n",
    )

    assert results == [None, None, None, None, None, 25.0]


def test_out_time_ms_is_read_as_microseconds() -> None:
    parser = ProgressParser(duration_seconds=4)

    assert feed_block(parser, "out_time_ms=1000000", "progress=continue")[-1] == 25.0


def test_not_available_time_keeps_the_previous_value() -> None:
    parser = ProgressParser(duration_seconds=10)
    feed_block(parser, "out_time_us=5000000", "progress=continue")

    assert feed_block(parser, "out_time_us=N/A", "out_time_ms=N/A", "progress=continue")[-1] == 50.0


def test_first_block_without_time_reports_zero() -> None:
    parser = ProgressParser(duration_seconds=10)

    assert feed_block(parser, "out_time_us=N/A", "progress=continue")[-1] == 0.0


def test_value_never_decreases() -> None:
    parser = ProgressParser(duration_seconds=10)
    values = [
        feed_block(parser, f"out_time_us={micros}", "progress=continue")[-1]
        for micros in (3_000_000, 2_000_000, 6_000_000, -40_000, 5_999_999)
    ]

    assert values == [30.0, 30.0, 60.0, 60.0, 60.0]


def test_value_is_clamped_to_100_while_running() -> None:
    parser = ProgressParser(duration_seconds=2)

    assert feed_block(parser, "out_time_us=2040000", "progress=continue")[-1] == 100.0


def test_end_returns_100_even_when_short_of_the_duration() -> None:
    parser = ProgressParser(duration_seconds=10)
    feed_block(parser, "out_time_us=9000000", "progress=continue")

    assert feed_block(parser, "out_time_us=9960000", "progress=end")[-1] == 100.0


def test_unknown_duration_still_ends_at_100() -> None:
    parser = ProgressParser(duration_seconds=0)

    assert feed_block(parser, "out_time_us=1000000", "progress=continue")[-1] == 0.0
    assert parser.feed("progress=end") == 100.0


def test_padded_values_and_noise_are_tolerated() -> None:
    parser = ProgressParser(duration_seconds=10)

    assert parser.feed("speed= 8.2x") is None
    assert parser.feed("") is None
    assert parser.feed("garbage without equals") is None
    assert feed_block(parser, "out_time_us= 1000000 ", "progress=continue\r\n")[-1] == 10.0
