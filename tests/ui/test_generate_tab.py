"""The Generate tab in a real browser: the vocoder list, playing the result, the badge, retry,
fresh seeds and numbered takes, BigVGAN-v2 marked unavailable in the UI's own words.

The session's hub is offline with an empty cache (``private_hub`` in conftest), so BigVGAN-v2
is unavailable unless a test gives it a folder or serves a hub on loopback."""

from __future__ import annotations

import re
from pathlib import Path

import soundfile as sf
from playwright.sync_api import expect

from distillgan.generation import vocoder_status
from tests.ui.conftest import (
    choose,
    field,
    free_port,
    full_page_screenshot,
    loopback_hub,
    train_per_model_vocoder,
    write_tiny_bigvgan,
)

# the voiced model's list with BigVGAN-v2 not to be had: auto renders with the model's own vocoder
VOICED_OFFLINE = (
    "Auto (Per-model HiFi-GAN: BigVGAN unavailable)",
    "Per-model HiFi-GAN",
    "BigVGAN Universal (unavailable)",
)


def show_generate_tab(page: object, model: str) -> None:
    page.get_by_role("tab", name="Generate").click()
    # the page has read the models
    expect(page.locator("#gen-vocoder-info")).to_contain_text(re.compile(r"Auto (picks|uses) the"))
    # the tab's own refresh of the model list may land while the list is open, and a click on the
    # re-drawn list can miss: choose again until the choice holds
    for _ in range(3):
        choose(page, "gen-model", model)
        try:
            expect(field(page, "gen-model")).to_have_value(model, timeout=3_000)
            break
        except AssertionError:
            continue
    expect(field(page, "gen-model")).to_have_value(model)


def expect_vocoders(page: object, *labels: str) -> None:
    expect(page.locator("#gen-vocoder label")).to_have_text(list(labels))


def shown_seed(page: object, *, not_: int | None = None) -> int:
    """The seed on the badge, once a result (other than one with seed ``not_``) is shown."""
    other = "" if not_ is None else rf"(?!{not_} )"
    badge = page.locator("#gen-badge")
    expect(badge).to_contain_text(re.compile(rf"seed {other}\d+ · .*Saved to", re.S), timeout=90_000)
    return int(re.search(r"seed (\d+) · ", badge.inner_text()).group(1))


def set_duration(page: object, seconds: str) -> None:
    field(page, "gen-duration").fill(seconds)
    field(page, "gen-duration").press("Enter")


def test_generate_plays_audio_and_shows_the_badge(page, voiced_model) -> None:
    show_generate_tab(page, voiced_model.stem)
    expect_vocoders(page, *VOICED_OFFLINE)
    # barely trained: auto would take BigVGAN-v2, which cannot be had here, so it uses the
    # model's own and says so; chosen by hand it plays, with the warning
    expect(page.locator("#gen-vocoder-info")).to_contain_text(
        "Auto uses the Per-model HiFi-GAN: BigVGAN-v2 would be chosen but cannot be had here"
    )
    expect(page.locator("#gen-vocoder-info")).to_contain_text("quality may be limited")
    page.locator("#gen-vocoder").get_by_label("Per-model HiFi-GAN", exact=True).check()

    field(page, "gen-seed").fill("7")
    field(page, "gen-duration").fill("1.5")
    field(page, "gen-duration").press("Enter")
    choose(page, "gen-sample-rate", "48 kHz")
    choose(page, "gen-bit-depth", "24-bit")
    page.locator("#gen-go").click()

    badge = page.locator("#gen-badge")
    expect(badge).to_contain_text("Vocoder: Per-model HiFi-GAN V2", timeout=90_000)
    for fact in ("seed 7", "1.50 s", "48000 Hz", "24-bit PCM"):
        expect(badge).to_contain_text(fact)
    # a take named as the CLI names its takes (tests/cli/test_generate.py)
    out = voiced_model.parent / "generated" / f"{voiced_model.stem}_seed7_take01.wav"
    info = sf.info(str(out))
    assert (info.samplerate, info.subtype, round(info.duration, 2)) == (48000, "PCM_24", 1.5)

    # it plays in the page: the player's clock moves and its button turns into "Pause"
    player = page.locator("#gen-audio")
    expect(player.locator("#duration")).to_have_text(re.compile(r"0:0[12]"))  # 1.5 s
    player.get_by_role("button", name="Play", exact=True).click()
    expect(player.get_by_role("button", name="Pause", exact=True)).to_be_visible()
    expect(player.locator("#time")).not_to_have_text("0:00", timeout=10_000)
    full_page_screenshot(page, "generate-tab.png")


def test_bigvgan_first_use_retry_and_download_progress(
    page, vae_model, corpus, monkeypatch, tmp_path
) -> None:
    from distillgan.vocoders.bigvgan_weights import LOCAL_DIR_ENV

    # a private, empty hub cache and a hub that cannot be reached (read on every generation)
    monkeypatch.delenv(LOCAL_DIR_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    show_generate_tab(page, vae_model.stem)
    expect_vocoders(page, "Auto (BigVGAN Universal, unavailable)", "BigVGAN Universal (unavailable)")
    expect(page.locator("#gen-vocoder-info")).to_contain_text("the Hugging Face hub is unreachable")
    set_duration(page, "1")

    page.locator("#gen-go").click()
    expect(page.locator("#gen-error")).to_contain_text("the Hugging Face hub is unreachable", timeout=60_000)
    expect(page.locator("#gen-retry")).to_be_visible()

    # the hub answers now: retry downloads, with its progress on the page
    with loopback_hub(write_tiny_bigvgan(tmp_path / "published"), body_delay_s=2.0) as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        page.locator("#gen-retry").click()
        expect(page.locator("#gen-audio")).to_contain_text("Downloading BigVGAN-v2", timeout=30_000)
        expect(page.locator("#gen-badge")).to_contain_text("Vocoder: BigVGAN-v2 universal", timeout=60_000)
    expect(page.locator("#gen-error")).to_be_hidden()
    expect(page.locator("#gen-retry")).to_be_hidden()
    # downloaded: no longer marked unavailable
    expect_vocoders(page, "Auto (BigVGAN Universal)", "BigVGAN Universal")
    expect(page.locator("#gen-vocoder-info")).to_contain_text("BigVGAN-v2 is in the Hugging Face cache")

    # a vocoder trained meanwhile is offered when the tab is shown again, without a restart
    train_per_model_vocoder(vae_model, corpus, epochs=1)
    page.get_by_role("tab", name="Train").click()
    page.get_by_role("tab", name="Generate").click()
    # BigVGAN is here now, so the run scored it too: auto takes whichever rendered the held-out
    # clips better (two tiny networks: either can), and says so with both figures
    status = vocoder_status(vae_model)
    auto = {"hifigan": "Per-model HiFi-GAN", "bigvgan": "BigVGAN Universal"}[status.auto_choice]
    expect_vocoders(page, f"Auto ({auto})", "Per-model HiFi-GAN", "BigVGAN Universal")
    expect(page.locator("#gen-vocoder-info")).to_contain_text(
        re.compile(r"own vocoder [\d.]+ vs BigVGAN [\d.]+")
    )


def test_fresh_seeds_numbered_takes_reuse_and_a_model_switch(page, voiced_model, vae_model) -> None:
    generated = voiced_model.parent / "generated"
    show_generate_tab(page, voiced_model.stem)
    expect_vocoders(page, *VOICED_OFFLINE)
    page.locator("#gen-vocoder").get_by_label("Per-model HiFi-GAN", exact=True).check()
    set_duration(page, "1")
    expect(field(page, "gen-seed")).to_have_value("")  # empty: a fresh seed each take
    expect(field(page, "gen-seed")).to_have_attribute("placeholder", "random")

    page.locator("#gen-go").click()
    first = shown_seed(page)
    page.locator("#gen-go").click()
    second = shown_seed(page, not_=first)
    assert first != second
    takes = [generated / f"{voiced_model.stem}_seed{seed}_take01.wav" for seed in (first, second)]
    assert sf.read(takes[0])[0].tolist() != sf.read(takes[1])[0].tolist()  # two takes, two clips
    expect(field(page, "gen-seed")).to_have_value("")  # still random for the next take

    # the seed shown, reused, renders the same clip again as a new take of that seed
    reuse = page.locator("#gen-reuse-seed")
    expect(reuse).to_have_text(f"Reuse seed {second}")
    reuse.click()
    expect(field(page, "gen-seed")).to_have_value(str(second))
    page.locator("#gen-go").click()
    retake = generated / f"{voiced_model.stem}_seed{second}_take02.wav"
    expect(page.locator("#gen-badge")).to_contain_text(retake.name, timeout=90_000)
    assert sf.read(retake)[0].tolist() == sf.read(takes[1])[0].tolist()
    assert takes[1].is_file()  # nothing overwritten
    expect(page.locator("#gen-audio").get_by_role("button", name="Play", exact=True)).to_have_count(1)

    # another model: the previous model's player, badge and seed button go
    choose(page, "gen-model", vae_model.stem)
    expect(page.locator("#gen-badge")).not_to_contain_text("Vocoder:")  # (Gradio's status may show)
    expect(page.locator("#gen-audio").get_by_role("button", name="Play", exact=True)).to_have_count(0)
    expect(reuse).to_be_hidden()
    expect(field(page, "gen-seed")).to_have_value(str(second))  # what was typed stays typed


def enter_folder(folder_field: object, folder: Path) -> None:
    """Type a BigVGAN folder and press Enter, then leave the field. Both redraw the vocoder list,
    one at a time: the page may still send the field's previous text with an Enter pressed the
    moment it was typed, and the blur that follows carries the new one."""
    folder_field.fill(str(folder))  # type: ignore[attr-defined]
    folder_field.press("Enter")  # type: ignore[attr-defined]
    folder_field.blur()  # type: ignore[attr-defined]


def test_bigvgan_unavailable_says_so_in_the_uis_words(page, vae_model, tmp_path) -> None:
    show_generate_tab(page, vae_model.stem)
    expect_vocoders(page, "Auto (BigVGAN Universal, unavailable)", "BigVGAN Universal (unavailable)")
    info = page.locator("#gen-vocoder-info")
    expect(info).to_contain_text(
        "BigVGAN-v2 is unavailable: its weights are not cached and HF_HUB_OFFLINE is set"
    )
    expect(info).to_contain_text('enter it as "BigVGAN folder" (Generate tab, Advanced)')
    expect(info).not_to_contain_text("--bigvgan-dir")
    set_duration(page, "1")
    page.locator("#gen-go").click()
    error = page.locator("#gen-error")
    expect(error).to_contain_text('"BigVGAN folder"', timeout=60_000)
    expect(error).not_to_contain_text("--bigvgan-dir")
    expect(page.locator("#gen-retry")).to_be_visible()

    # the folder field does what the CLI's --bigvgan-dir does
    page.locator("#gen-advanced").get_by_text("Advanced").click()
    folder_field = field(page, "gen-bigvgan-dir")
    enter_folder(folder_field, tmp_path / "nowhere")
    expect(info).to_contain_text(f"BigVGAN-v2 folder {tmp_path / 'nowhere'} does not exist")
    folder = write_tiny_bigvgan(tmp_path / "bigvgan")
    enter_folder(folder_field, folder)
    expect_vocoders(page, "Auto (BigVGAN Universal)", "BigVGAN Universal")
    expect(info).to_contain_text(f"BigVGAN-v2 is read from {folder}")
    page.locator("#gen-retry").click()
    expect(page.locator("#gen-badge")).to_contain_text("Vocoder: BigVGAN-v2 universal", timeout=90_000)
    expect(error).to_be_hidden()


def test_a_seed_that_is_no_whole_number_is_refused_with_the_clis_words(served, voiced_model) -> None:
    generate = served.app.generate
    for typed in ("12a", "-3", "1.5"):
        audio, badge, error, _ = generate.on_generate(voiced_model.stem, typed, 1.0, 44100, "16", "hifigan")[
            :4
        ]
        assert audio is None and badge == ""
        assert f"seed must be a whole number from 0 to 9223372036854775807, got '{typed}'" in error["value"]
    # digits are a seed; the take is named after it
    audio, badge, error, _ = generate.on_generate(voiced_model.stem, " 12 ", 1.0, 44100, "16", "hifigan")[:4]
    assert "seed 12 · " in badge and Path(audio).name.startswith(f"{voiced_model.stem}_seed12_take")
