"""The web page in a real headless browser (Debian's chromium through its chromedriver):
it speaks a sentence, plays the chunks with Web Audio, reports the first-audio time, the RTF
and every chunk; then again with an uploaded voice prompt."""

import os

import pytest
import soundfile as sf
from served import API_KEY, reference_stream, sine_prompt, wait_idle

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FRAMES, FRAMES_PER_CHUNK, HOP = 24, 4, 640


@pytest.fixture(scope="module")
def browser():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} missing: apt-get install chromium chromium-driver "
                    "(tools/install.sh does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no driver download
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def speak(driver, timeout=90):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, "speak").click()
    WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    read = {name: driver.find_element(By.ID, name).text
            for name in ("status", "first-audio", "rtf", "chunks", "chunks-total", "audio-seconds", "error")}
    read["state"] = driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")
    read["player"] = driver.execute_script(
        "return [window.sledPlayer.scheduled, window.sledPlayer.scheduledSeconds, window.sledPlayer.contextState()]")
    return read


def check_spoken(read):
    chunks = FRAMES // FRAMES_PER_CHUNK
    assert read["state"] == "done" and read["error"] == "", read
    assert float(read["first-audio"]) > 0  # milliseconds from the click to the first chunk
    assert float(read["rtf"]) > 0
    assert read["chunks"] == read["chunks-total"] == str(chunks)
    assert float(read["audio-seconds"]) == pytest.approx(FRAMES * HOP / 24000, abs=0.01)
    scheduled, seconds, context = read["player"]
    assert scheduled == chunks and seconds == pytest.approx(FRAMES * HOP / 24000, abs=1e-3)
    assert context == "running"


def test_page_speaks_and_reports_first_audio_and_all_chunks(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait_idle(server)
    browser.get(server + "/")
    WebDriverWait(browser, 30).until(lambda d: "24000 Hz" in d.find_element(By.ID, "model").text)
    text = browser.find_element(By.ID, "text")
    text.clear()
    text.send_keys("the cat sat on the mat.")
    for name, value in (("seed", "1"), ("stop-threshold", "1.5"), ("max-frames", str(FRAMES))):
        browser.find_element(By.ID, name).send_keys(value)
    check_spoken(speak(browser))

    audio, sample_rate, _ = sine_prompt()
    sf.write(tmp_path / "prompt.wav", audio, sample_rate)
    browser.find_element(By.ID, "prompt-audio").send_keys(str(tmp_path / "prompt.wav"))
    browser.find_element(By.ID, "prompt-text").send_keys("a low hum.")
    check_spoken(speak(browser))
    wait_idle(server)


def test_named_voice_menu_waveform_and_download(protocol_server, browser, synthesizer):
    """On a server with --voices and --api_key (the page opened as /?api_key=KEY): the menu lists
    the voices; speaking as 'hum' draws every sample and offers a WAV equal to the in-process stream."""
    import base64

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait_idle(protocol_server.url)
    browser.get(f"{protocol_server.url}/?api_key={API_KEY}")
    menu = browser.find_element(By.ID, "voice")
    WebDriverWait(browser, 30).until(lambda d: len(Select(menu).options) == 2)
    assert [o.get_attribute("value") for o in Select(menu).options] == ["hum", "default"]
    Select(menu).select_by_value("hum")
    text = browser.find_element(By.ID, "text")
    text.clear()
    text.send_keys("the cat sat on the mat.")
    for name, value in (("seed", "1"), ("stop-threshold", "1.5"), ("max-frames", str(FRAMES))):
        browser.find_element(By.ID, name).send_keys(value)
    check_spoken(speak(browser))
    assert browser.execute_script("return window.sledPlayer.drawnSamples") == FRAMES * HOP
    assert browser.find_element(By.ID, "download").is_displayed()
    wav = base64.b64decode(browser.execute_async_script(
        "const done = arguments[0]; fetch(window.sledPlayer.download).then((r) => r.arrayBuffer()).then((b) => "
        "done(btoa(String.fromCharCode(...new Uint8Array(b)))));"))
    audio, sample_rate, _ = sine_prompt()
    expected, _ = reference_stream(synthesizer, "the cat sat on the mat.", prompt=(audio[None], sample_rate,
                                   "a low hum."), seed=1, stop_threshold=1.5, max_frames=FRAMES)
    assert wav[:4] == b"RIFF" and wav[44:] == expected
