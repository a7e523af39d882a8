"""Random-crop batches from an in-memory corpus: never empty, deterministic, resumable."""

from __future__ import annotations

import torch

from distillgan.data import CropDataModule, RandomCropLoader, hold_out


def constant_sequences(lengths: list[int]) -> list[torch.Tensor]:
    """Sequence i holds only the value i + 1, so a crop shows which sequence it came from."""
    return [torch.full((n,), float(i + 1)) for i, n in enumerate(lengths)]


def test_an_epoch_is_never_empty_however_small_the_corpus() -> None:
    loader = RandomCropLoader(constant_sequences([300, 500]), crop_len=1024, batch_size=16)
    assert len(loader) == 1
    (batch,) = list(loader)
    assert batch.shape == (16, 1024)
    # sequences shorter than a crop are padded with the fill value
    assert set(batch.unique().tolist()) <= {0.0, 1.0, 2.0}


def test_epoch_length_covers_the_corpus_once_across_processes() -> None:
    sequences = constant_sequences([10_000, 30_000])
    assert len(RandomCropLoader(sequences, 1000, 4)) == 10  # 40 000 samples / (1000 x 4)
    assert len(RandomCropLoader(sequences, 1000, 4, world_size=2)) == 5


def test_crops_stay_inside_one_sequence_and_favour_longer_ones() -> None:
    loader = RandomCropLoader(constant_sequences([2000, 6000]), crop_len=512, batch_size=64)
    counts = torch.zeros(2)
    for index in range(20):
        batch = loader.batch(index)
        for crop in batch:
            values = crop.unique()
            assert len(values) == 1  # never straddles two files
            counts[int(values.item()) - 1] += 1
    assert counts[1] > 2 * counts[0]  # picked in proportion to length (6000 vs 2000)


def test_a_share_of_crops_starts_at_a_files_first_sample_and_the_rest_are_as_before() -> None:
    sequences = [torch.arange(20_000.0), torch.arange(30_000.0) + 1e6]  # each sample says where it is
    plain = RandomCropLoader(sequences, 1024, 64, seed=1)
    starting = RandomCropLoader(sequences, 1024, 64, seed=1, start_fraction=0.25)
    at_start = 0
    for index in range(10):
        crops, before = starting.batch(index), plain.batch(index)
        first = crops[:, 0] % 1e6
        at_start += int((first == 0).sum())
        moved = first == 0
        assert torch.equal(crops[~moved], before[~moved])  # every other crop is the one it was
    assert 0.15 < at_start / 640 < 0.35
    assert int(sum(int((plain.batch(i)[:, 0] % 1e6 == 0).sum()) for i in range(10))) == 0


def test_batches_depend_only_on_seed_rank_and_index() -> None:
    audio = [torch.randn(20_000), torch.randn(7000)]
    a = RandomCropLoader(audio, 1024, 4, seed=3)
    b = RandomCropLoader(audio, 1024, 4, seed=3)
    assert torch.equal(a.batch(7), b.batch(7))
    assert not torch.equal(a.batch(7), a.batch(8))
    assert not torch.equal(a.batch(7), RandomCropLoader(audio, 1024, 4, seed=3, rank=1).batch(7))
    assert not torch.equal(a.batch(7), RandomCropLoader(audio, 1024, 4, seed=4).batch(7))


def test_a_loader_resumed_from_its_state_continues_with_the_next_batches() -> None:
    audio = [torch.randn(50_000)]
    original = RandomCropLoader(audio, 1024, 4)  # 13 batches an epoch
    first_epoch = list(original)
    partial = iter(original)
    seen = [next(partial) for _ in range(5)]  # 5 batches into the second epoch
    state = original.state_dict()
    rest_of_epoch = list(partial)

    resumed = RandomCropLoader(audio, 1024, 4)
    resumed.load_state_dict(state)
    assert [b.tolist() for b in resumed] == [b.tolist() for b in rest_of_epoch]
    assert len(first_epoch) == len(seen) + len(rest_of_epoch) == 13
    # the epoch after a resume is a full one, continuing the run's batch numbering
    assert len(list(resumed)) == 13
    assert torch.equal(resumed.batch(0), first_epoch[0])


def test_datamodule_state_reaches_a_loader_created_later() -> None:
    audio = [torch.randn(50_000)]
    source = RandomCropLoader(audio, 1024, 4)
    list(source)
    module = CropDataModule()
    assert module.state_dict() == {}
    module.load_state_dict(source.state_dict())  # restored before setup() built the loader
    module._attach_loader(RandomCropLoader(audio, 1024, 4))
    assert module.state_dict() == source.state_dict()


def test_hold_out_spreads_clips_over_the_corpus_then_uses_the_longest_files() -> None:
    train, clips = hold_out(constant_sequences([5000] * 8), clip_len=2000, count=4, min_remaining=1000)
    assert [c[0].item() for c in clips] == [1.0, 3.0, 5.0, 7.0]  # files 0, 2, 4, 6: not the first four
    assert [t.shape[-1] for t in train] == [3000, 5000] * 4

    train, clips = hold_out(
        constant_sequences([5000, 9000, 1500]), clip_len=2000, count=4, min_remaining=1000
    )
    # one clip from each long-enough file, then the longest again while enough remains
    assert [c[0].item() for c in clips] == [1.0, 2.0, 2.0, 2.0]
    assert all(c.shape[-1] == 2000 for c in clips)
    assert [t.shape[-1] for t in train] == [3000, 3000, 1500]


def test_hold_out_on_a_corpus_too_short_keeps_everything_for_training() -> None:
    train, clips = hold_out(constant_sequences([1500, 1200]), clip_len=2000, count=3, min_remaining=1000)
    assert [t.shape[-1] for t in train] == [1500, 1200]  # nothing removed
    assert len(clips) == 1 and clips[0].shape[-1] == 2000  # one (overlapping, zero-padded) clip


def test_hold_out_files_takes_whole_files_spread_over_the_corpus() -> None:
    from distillgan.data import hold_out_files

    sequences = [torch.full((5000,), float(i)) for i in range(20)]
    train, clips, held = hold_out_files(sequences, clip_len=2000, count=4)
    assert held == [5, 15] and len(train) == 18 and len(clips) == 4
    assert {float(c[0]) for c in clips} == {5.0, 15.0}  # clips come only from the held-out files
    assert all(float(s[0]) not in (5.0, 15.0) for s in train) and all(s.numel() == 5000 for s in train)
    _, short_clips, _ = hold_out_files([torch.ones(100)] * 8, clip_len=2000, count=2)
    assert all(c.numel() == 2000 for c in short_clips)  # a short file is padded to a clip
