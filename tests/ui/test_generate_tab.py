"""The Generate tab in a real browser: the vocoder list, playing the result, the badge, retry."""

from __future__ import annotations

import re

import soundfile as sf
from playwright.sync_api import expect

from tests.ui.conftest import (
    choose,
    field,
    free_port,
    full_page_screenshot,
    loopback_hub,
    train_per_model_vocoder,
    write_tiny_bigvgan,
)


def show_generate_tab(page: object, model: str) -> None:
    page.get_by_role("tab", name="Generate").click()
    expect(page.locator("#gen-vocoder-info")).to_contain_text("Auto picks")  # the tab has read the models
    choose(page, "gen-model", model)
    expect(field(page, "gen-model")).to_have_value(model)


def expect_vocoders(page: object, *labels: str) -> None:
    expect(page.locator("#gen-vocoder label")).to_have_text(list(labels))


def test_generate_plays_audio_and_shows_the_badge(page, voiced_model) -> None:
    show_generate_tab(page, voiced_model.stem)
    expect_vocoders(page, "Auto (BigVGAN Universal)", "Per-model HiFi-GAN", "BigVGAN Universal")
    # barely trained: auto does not pick it (and says why, by its measured error); chosen by
    # hand it plays, with the warning
    expect(page.locator("#gen-vocoder-info")).to_contain_text("Auto picks the BigVGAN Universal")
    expect(page.locator("#gen-vocoder-info")).to_contain_text("held-out mel error")
    expect(page.locator("#gen-vocoder-info")).to_contain_text("quality may be limited")
    page.locator("#gen-vocoder").get_by_label("Per-model HiFi-GAN").check()

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
    out = voiced_model.parent / "generated" / f"{voiced_model.stem}_seed7_hifigan_48000_24.wav"
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
    expect_vocoders(page, "Auto (BigVGAN Universal)", "BigVGAN Universal")
    expect(page.locator("#gen-vocoder-info")).to_contain_text("downloaded once, on first use")
    field(page, "gen-duration").fill("1")
    field(page, "gen-duration").press("Enter")

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

    # a vocoder trained meanwhile is offered when the tab is shown again, without a restart
    train_per_model_vocoder(vae_model, corpus, epochs=1)
    page.get_by_role("tab", name="Train").click()
    page.get_by_role("tab", name="Generate").click()
    expect_vocoders(page, "Auto (Per-model HiFi-GAN)", "Per-model HiFi-GAN", "BigVGAN Universal")
