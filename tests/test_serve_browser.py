"""The playground in a real browser: headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium) types a prompt, generates with the keyboard only, watches the text stream
in, stops it, checks the token colours and the top-5 alternatives, shows the model's own name
and example prompt, draws Devanagari with a font that has it (Debian's fonts-noto-core), and
saves screenshots."""

from __future__ import annotations

import math
import os
import shutil
import subprocess

import httpx
import pytest
import torch
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from gpt2.serving.app import create_app
from gpt2.serving.background import BackgroundServer
from gpt2.serving.options import ServeLimits
from test_serve_helpers import MODEL, tiny_text

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    pytest.skip("needs Debian's chromium and chromium-driver (make browser)", allow_module_level=True)
NEPALI = "नेपाल एक सुन्दर देश हो।"  # 18 glyphs in Noto Sans Devanagari (conjuncts and vowel signs)


def has_devanagari_font() -> bool:
    """Whether fontconfig knows a font covering Nepali (fonts-noto-core brings Noto Sans Devanagari)."""
    try:
        listed = subprocess.run(["fc-list", ":lang=ne", "family"], capture_output=True, text=True,
                                check=False)
    except FileNotFoundError:
        return False
    return bool(listed.stdout.strip())


@pytest.fixture(scope="module")
def server():
    """The tiny model served as `gpt2 serve` serves a Nepali run: with an example prompt in Devanagari."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as running_server does
    try:
        app = create_app(tiny_text(), MODEL, ServeLimits(max_tokens_limit=5000), example_prompt=NEPALI)
        with BackgroundServer(app) as server:
            yield server
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def fill(browser, field: str, value: str) -> None:
    """Type into a field as a user would (select all, then type over it)."""
    element = browser.find_element(By.ID, field)
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(value)


def colour(browser, element_or_css) -> str:
    """The computed background colour of an element, or of a CSS colour, in the browser's words."""
    return browser.execute_script(
        "let e = arguments[0], probe = null;"
        " if (typeof e === 'string') { probe = document.createElement('span'); probe.style.background = e;"
        " document.body.append(probe); e = probe; }"
        " const c = getComputedStyle(e).backgroundColor; if (probe) probe.remove(); return c;",
        element_or_css)


def open_playground(browser, server) -> WebDriverWait:
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda b: MODEL in b.find_element(By.ID, "model").text)
    return wait


def fonts_drawing(browser, text: str) -> list[dict]:
    """The platform fonts Chromium drew `text` with (DevTools' CSS.getPlatformFontsForNode), found
    wherever it is shown, inside a textarea's own shadow tree too: [{familyName, glyphCount}, ...]."""
    browser.execute_cdp_cmd("DOM.enable", {})
    browser.execute_cdp_cmd("CSS.enable", {})
    nodes = [browser.execute_cdp_cmd("DOM.getDocument", {"depth": -1, "pierce": True})["root"]]
    while nodes:
        node = nodes.pop()
        if node.get("nodeType") == 3 and text in node.get("nodeValue", ""):
            return browser.execute_cdp_cmd("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})["fonts"]
        nodes += node.get("children", []) + node.get("shadowRoots", [])
    raise AssertionError(f"{text!r} is not on the page")


def test_the_page_names_the_served_model_and_prefills_its_example_prompt(browser, server):
    open_playground(browser, server)
    served = httpx.get(server.url + "/v1/models").json()["data"][0]["id"]
    assert browser.find_element(By.ID, "model").text == f"model: {served}"
    assert browser.title == f"{served} · gpt2 playground"
    assert httpx.get(server.url + "/health").json()["example_prompt"] == NEPALI
    prompt = browser.find_element(By.ID, "prompt")
    WebDriverWait(browser, 10).until(lambda b: prompt.get_property("value") == NEPALI)  # the model's own text


def test_devanagari_is_drawn_with_a_font_that_has_it(browser, server, tmp_path):
    if not has_devanagari_font():
        if os.environ.get("CI"):
            raise RuntimeError("CI needs fonts-noto-core (apt-get install fonts-noto-core)")
        pytest.skip("needs a Devanagari font: Debian's fonts-noto-core (make browser)")
    open_playground(browser, server)
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "prompt").get_property("value"))
    fonts = fonts_drawing(browser, NEPALI)  # the example prompt the page starts with
    devanagari = [f for f in fonts if "Devanagari" in f["familyName"]]
    # Boxes would come from the monospace font's missing-glyph shape: every Devanagari letter must
    # be a glyph of a Devanagari font (the space and the danda may come from the Latin font).
    assert devanagari and sum(f["glyphCount"] for f in devanagari) >= 15, fonts
    prompt = browser.find_element(By.ID, "prompt")
    prompt.screenshot(str(tmp_path / "devanagari.png"))
    assert (tmp_path / "devanagari.png").stat().st_size > 1_000


def test_text_streams_in_and_escape_stops_it(browser, server):
    wait = open_playground(browser, server)
    fill(browser, "prompt", "Once upon a time")
    fill(browser, "max_tokens", "5000")
    browser.find_element(By.ID, "prompt").send_keys(Keys.CONTROL, Keys.ENTER)  # keyboard only
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#output .tok")) >= 5)
    assert browser.find_element(By.ID, "status").text == "generating…"  # text shows before the end
    browser.find_element(By.ID, "prompt").send_keys(Keys.ESCAPE)
    wait.until(lambda b: b.find_element(By.ID, "status").text == "stopped")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#output .tok")) < 5000
    wait.until(lambda b: httpx.get(server.url + "/health").json()["running"] == 0)  # the server stopped too


def test_tokens_are_coloured_by_probability_with_their_alternatives(browser, server, tmp_path):
    wait = open_playground(browser, server)
    fill(browser, "prompt", "Once upon a time")
    for field, value in (("max_tokens", "40"), ("temperature", "0.9"), ("seed", "3")):
        fill(browser, field, value)
    browser.find_element(By.ID, "prompt").send_keys(Keys.TAB)
    browser.find_element(By.ID, "generate").send_keys(Keys.ENTER)  # a focused button answers Enter
    wait.until(lambda b: b.find_element(By.ID, "status").text.startswith("done"))
    same = {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0.9, "seed": 3, "logprobs": 5}
    api = httpx.post(server.url + "/v1/completions", json=same).json()
    choice = api["choices"][0]
    output = browser.find_element(By.ID, "output")
    assert output.text == "Once upon a time" + choice["text"]  # seeded: the same text the API gives
    spans = output.find_elements(By.CSS_SELECTOR, ".tok")
    assert len(spans) == 40
    first = math.exp(choice["logprobs"]["token_logprobs"][0])
    assert colour(browser, spans[0]) == colour(browser, f"hsl({round(120 * first)} 80% 80%)")
    assert len({colour(browser, s) for s in spans}) > 3  # colours differ from token to token

    output.send_keys(Keys.ARROW_RIGHT)  # keyboard: focus the first token, show its alternatives
    tooltip = browser.find_element(By.ID, "tooltip")
    wait.until(lambda b: tooltip.is_displayed())
    rows = tooltip.find_elements(By.CSS_SELECTOR, "tr")
    assert len(rows) == 5 and browser.switch_to.active_element == spans[0]
    top = choice["logprobs"]["top_logprobs"][0]
    best = max(top, key=top.get)
    assert rows[0].find_elements(By.TAG_NAME, "td")[0].text == f'"{best}"'.replace("\n", "\\n")
    browser.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)  # the next token
    assert browser.switch_to.active_element == spans[1] and tooltip.is_displayed()
    browser.save_screenshot(str(tmp_path / "playground.png"))
    assert (tmp_path / "playground.png").stat().st_size > 10_000


def test_the_playground_fits_a_phone_width_screen(browser, server, tmp_path):
    browser.set_window_size(390, 844)
    try:
        open_playground(browser, server)
        width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1]  # no sideways scrolling
        button = browser.find_element(By.ID, "generate")
        assert button.is_displayed() and button.size["width"] >= 44  # a finger-sized target
        browser.save_screenshot(str(tmp_path / "playground-phone.png"))
    finally:
        browser.set_window_size(1000, 1000)


def test_chat_mode_keeps_a_conversation_with_token_colours(browser, server, tmp_path):
    wait = open_playground(browser, server)
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=chat]").click()
    assert browser.find_element(By.ID, "generate").text == "Send"
    fill(browser, "system", "Be.")  # short: the tiny model's context is 64 characters
    for field, value in (("max_tokens", "6"), ("temperature", "0.9"), ("seed", "3")):
        fill(browser, field, value)
    messages = [{"role": "system", "content": "Be."}]
    for turn, said in enumerate(["Hi", "Who?"]):
        fill(browser, "prompt", said)
        browser.find_element(By.ID, "prompt").send_keys(Keys.CONTROL, Keys.ENTER)
        wait.until(lambda b, n=turn: len(b.find_elements(By.CSS_SELECTOR, ".msg.assistant")) == n + 1
                   and b.find_element(By.ID, "status").text.startswith("done"))
        messages.append({"role": "user", "content": said})
        api = httpx.post(server.url + "/v1/chat/completions",
                         json={"messages": messages, "max_tokens": 6, "temperature": 0.9, "seed": 3}).json()
        answer = api["choices"][0]["message"]["content"]
        bubble = browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]
        assert bubble.text.removeprefix("Model").strip() == answer.strip()  # the API gives it too
        assert bubble.find_elements(By.CSS_SELECTOR, ".tok")  # coloured tokens, as in completion mode
        messages.append({"role": "assistant", "content": answer.strip()})
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".msg.user")] == ["You\nHi", "You\nWho?"]
    assert browser.find_element(By.ID, "prompt").get_attribute("value") == ""
    browser.save_screenshot(str(tmp_path / "playground-chat.png"))
    browser.find_element(By.ID, "new_chat").click()
    assert not browser.find_elements(By.CSS_SELECTOR, ".msg")
