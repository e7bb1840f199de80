import pytest

from xcomp.compression.schedule import CompressionSchedule
from xcomp.compression.token_drop import suffix_slots, uniform_slots
from xcomp.errors import ConfigError

PAPER_L28 = [16, 16, 16, 16, 15, 15, 14, 14, 13, 12, 12, 11, 10, 9, 9, 8, 7, 6, 5, 5, 4, 3, 3, 2, 2, 1, 1, 1]


def test_cosine_schedule_l28_matches_paper():
    s = CompressionSchedule.cosine(28)
    assert list(s.kept) == PAPER_L28
    assert s.output_tokens == 1
    assert s.token_layer_ratio() == pytest.approx(246 / 448)
    assert round(s.token_layer_ratio(), 3) == 0.549


def test_published_cosine_is_one_layer_earlier():
    s = CompressionSchedule.cosine(28, shift=1)
    assert list(s.kept) == PAPER_L28[1:] + [1]
    assert s.drop_layers() == [3, 5, 7, 8, 10, 11, 12, 14, 15, 16, 17, 19, 20, 22, 24]


def test_any_monotone_schedule_and_rejections():
    s = CompressionSchedule.from_list([16] * 2 + [4] * 2 + [1] * 2)
    assert s.drop_layers() == [2, 4]
    with pytest.raises(ConfigError):
        CompressionSchedule.from_list([16, 8, 12])
    with pytest.raises(ConfigError):
        CompressionSchedule.from_list([17, 1])
    with pytest.raises(ConfigError):
        CompressionSchedule.from_list([4, 0])


def test_parametric_family_contains_the_paper_cosine_and_linear():
    assert list(CompressionSchedule.parametric(28, start=0, end=28, final=1, shape="cosine").kept) == PAPER_L28
    assert CompressionSchedule.parametric(28, end=27, shape="linear") == CompressionSchedule.linear(28)
    late = CompressionSchedule.parametric(8, start=3, end=6, final=2, shape="power", exponent=2.0)
    assert list(late.kept) == [16, 16, 16, 16, 8, 4, 2, 2]  # 2 + round(14 * (1 - t) ** 2), t = 0, 1/3, 2/3
    bad = [dict(start=2, end=2), dict(start=-1), dict(end=9), dict(final=0), dict(final=17),
           dict(shape="step"), dict(shape="power", exponent=0.0)]  # fmt: skip
    for kwargs in bad:
        with pytest.raises(ConfigError):
            CompressionSchedule.parametric(8, **kwargs)


def test_suffix_and_uniform_slots_are_nested_with_scheduled_counts():
    kept = [16, 12, 7, 3, 1]
    for masks in (suffix_slots(kept, 16), uniform_slots(kept, 16)):
        assert [int(m.sum()) for m in masks] == kept
        for a, b in zip(masks, masks[1:]):
            assert bool((b & ~a).sum() == 0), "a dropped slot came back"
    assert suffix_slots([3], 16)[0].nonzero().flatten().tolist() == [13, 14, 15]
    spread = uniform_slots([16, 4], 16)[1].nonzero().flatten().tolist()
    assert spread[-1] == 15 and spread[0] == 0 and len(spread) == 4
