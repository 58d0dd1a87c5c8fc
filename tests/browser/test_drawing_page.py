"""The drawing page at GET /, used as a person uses it: real mouse strokes in headless chromium.

Ten digits are drawn stroke by stroke at the pad's on-screen position (device pixel ratio 2);
each answer must name the digit, show ten probabilities and the 28x28 picture the model saw
with its occlusion map, and clearing must empty it all.  Every test also checks that the page
logged no console error and made no request off the loopback server.

The stroke-to-answer latency (pointer up after the last stroke, including the page's debounce,
to the answer on screen) is printed (``pytest -s``); a screenshot of a drawn digit is written
under .pytest_cache (git-ignored) and its path printed.
"""

from __future__ import annotations

import math
import shutil
import statistics
from urllib.parse import urlsplit

from browser_fixtures import Recorded, check_clean, open_page
from live_server import COMMITTED_MODELS, gunicorn
from playwright.sync_api import Page, expect

Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, points: int = 14) -> Stroke:
    """Points on an ellipse, angles in degrees, 0 = right and 90 = down (screen coordinates)."""
    return [
        (cx + rx * math.cos(math.radians(start + (end - start) * i / (points - 1))),
         cy + ry * math.sin(math.radians(start + (end - start) * i / (points - 1))))
        for i in range(points)
    ]


# Each digit as a person writes it, in several strokes, in fractions of the pad's side.
DIGITS: dict[str, list[Stroke]] = {
    "0": [arc(0.5, 0.5, 0.19, 0.31, 270, 90), arc(0.5, 0.5, 0.19, 0.31, -90, 90)],
    "1": [[(0.42, 0.27), (0.53, 0.15)], [(0.53, 0.15), (0.52, 0.5), (0.51, 0.85)]],
    "2": [arc(0.5, 0.33, 0.18, 0.16, 190, 380) + [(0.42, 0.6), (0.3, 0.83)], [(0.3, 0.83), (0.72, 0.82)]],
    "3": [arc(0.48, 0.32, 0.17, 0.15, 200, 450), arc(0.48, 0.65, 0.2, 0.18, 270, 520)],
    "4": [[(0.52, 0.15), (0.27, 0.6), (0.75, 0.6)], [(0.6, 0.33), (0.6, 0.86)]],
    "5": [[(0.34, 0.17), (0.31, 0.48)] + arc(0.48, 0.64, 0.2, 0.19, 215, 520), [(0.34, 0.17), (0.7, 0.17)]],
    "6": [[(0.62, 0.15), (0.48, 0.25), (0.37, 0.4), (0.31, 0.58), (0.32, 0.7)],
          arc(0.5, 0.67, 0.18, 0.16, 180, 540)],
    "7": [[(0.27, 0.2), (0.73, 0.2)], [(0.73, 0.2), (0.58, 0.5), (0.45, 0.85)]],
    "8": [arc(0.5, 0.31, 0.15, 0.15, -90, 270), arc(0.5, 0.64, 0.19, 0.18, -90, 270)],
    "9": [arc(0.48, 0.33, 0.17, 0.16, 0, 360), [(0.65, 0.33), (0.63, 0.6), (0.61, 0.86)]],
}
MUST_RECOGNISE = 8

# Installed in the page: when the last stroke ended and when an answer for it appeared.
WATCH_ANSWERS = """() => {
  const pad = document.querySelector('[data-testid=pad]');
  const prediction = document.querySelector('[data-testid=prediction]');
  pad.addEventListener('pointerup', () => { window.strokeEnded = performance.now(); window.answered = null; });
  new MutationObserver(() => {
    if (prediction.getAttribute('aria-busy') === 'false' && prediction.textContent) {
      window.answered = performance.now();
    }
  }).observe(prediction, {attributes: true, childList: true, characterData: true, subtree: true});
}"""
ANSWERED = """() => {
  const prediction = document.querySelector('[data-testid=prediction]');
  return prediction.getAttribute('aria-busy') === 'false' && prediction.textContent !== '';
}"""
# Pixels of a canvas: lit (the model's picture), reddish (the occlusion map), any paint at all.
CANVAS_PIXELS = """(testid) => {
  const canvas = document.querySelector(`[data-testid=${testid}]`);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0, red = 0, painted = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a > 0) painted++;
    if (a > 0 && Math.max(r, g, b) > 60) lit++;
    if (a > 0 && r > 120 && r > g + 60 && r > b + 60) red++;
  }
  return {lit, red, painted, width: canvas.width, height: canvas.height};
}"""


def draw(page: Page, strokes: list[Stroke]) -> None:
    """Real mouse strokes at the pad's position on screen."""
    box = page.get_by_test_id("pad").bounding_box()
    assert box is not None
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=3)
        page.mouse.up()


def draw_by_touch(page: Page, strokes: list[Stroke]) -> None:
    """The same with a finger: touch events through the DevTools protocol, as a touch screen sends them."""
    box = page.get_by_test_id("pad").bounding_box()
    assert box is not None
    touch = page.context.new_cdp_session(page)
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": points[0][0], "y": points[0][1]}]})
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            for step in range(1, 4):
                x, y = x0 + (x1 - x0) * step / 3, y0 + (y1 - y0) * step / 3
                touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    touch.detach()


def wait_for_answer(page: Page) -> str:
    page.wait_for_function(ANSWERED, timeout=20_000)
    return page.get_by_test_id("prediction").text_content()


def test_drawn_digits_are_recognised_and_explained(page: Page, server: str, recorded: Recorded, request):
    open_page(page, server + "/")
    # The pad is sharp on a high-density screen: two canvas pixels per CSS pixel.
    pad = page.get_by_test_id("pad")
    css_width = pad.bounding_box()["width"]
    assert page.evaluate("() => document.querySelector('[data-testid=pad]').width") == round(2 * css_width)
    page.evaluate(WATCH_ANSWERS)

    answers, latencies_ms = {}, []
    screenshot = request.config.cache.mkdir("drawing-page") / "drawing-page.png"
    for digit, strokes in DIGITS.items():
        draw(page, strokes)
        answers[digit] = wait_for_answer(page)
        latencies_ms.append(page.evaluate("() => window.answered - window.strokeEnded"))

        bars = page.get_by_test_id("probabilities").locator("li")
        expect(bars).to_have_count(10)
        labels = [bars.nth(index).get_attribute("data-label") for index in range(10)]
        assert labels == [str(index) for index in range(10)]
        # The model's own 28x28 picture is drawn, with the occlusion map in red over its ink.
        page.wait_for_function(f"() => ({CANVAS_PIXELS})('model-input').lit > 0", timeout=10_000)
        seen = page.evaluate(CANVAS_PIXELS, "model-input")
        assert seen["red"] > 0, seen
        if digit == "3":
            page.screenshot(path=str(screenshot))

        page.get_by_test_id("clear").click()
        expect(page.get_by_test_id("prediction")).to_be_empty()
        expect(bars).to_have_count(0)
        assert page.evaluate(CANVAS_PIXELS, "pad")["painted"] == 0
        assert page.evaluate(CANVAS_PIXELS, "model-input")["painted"] == 0

    recognised = [digit for digit, answer in answers.items() if answer.startswith(digit)]
    print(f"\ndrawing page: recognised {len(recognised)}/{len(DIGITS)}: {answers}")
    print(
        f"stroke-to-answer latency (pointer up -> answer shown, debounce included): "
        f"median {statistics.median(latencies_ms):.0f} ms, max {max(latencies_ms):.0f} ms, "
        f"all {[round(value) for value in latencies_ms]}"
    )
    print(f"screenshot: {screenshot}")
    assert len(recognised) >= MUST_RECOGNISE, answers
    check_clean(recorded)


def test_the_predict_button_answers_and_a_blank_pad_is_explained(page: Page, server: str, recorded: Recorded):
    open_page(page, server + "/")
    page.get_by_test_id("predict").click()
    expect(page.get_by_test_id("message")).to_contain_text("blank")
    assert not any(url.endswith("/predict") or "/predict?" in url for url in recorded.requests)

    draw(page, DIGITS["7"])
    page.get_by_test_id("predict").click()  # at once, without waiting for the debounce
    assert wait_for_answer(page).startswith("7")
    check_clean(recorded)


def test_a_finger_draws_too(page: Page, server: str, recorded: Recorded):
    # Without touch-action: none the browser would take the finger's move for a scroll and
    # cancel the stroke.
    open_page(page, server + "/")
    draw_by_touch(page, DIGITS["4"])
    assert wait_for_answer(page).startswith("4")
    check_clean(recorded)


def test_an_answer_that_arrives_after_a_clear_is_dropped(page: Page, server: str, recorded: Recorded):
    open_page(page, server + "/")
    held = []
    page.route("**/predict?*", lambda route: held.append(route))
    draw(page, DIGITS["7"])
    for _ in range(400):  # up to 20 s; Playwright calls the route handler while it waits
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page sent no /predict request after the stroke"
    page.get_by_test_id("clear").click()
    with page.expect_event("requestfinished", lambda r: "/predict" in r.url):
        held[0].continue_()
    # The page parses the late answer in a task after the body arrives; give it that task.
    page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 200))")
    expect(page.get_by_test_id("prediction")).to_be_empty()
    expect(page.get_by_test_id("probabilities").locator("li")).to_have_count(0)
    check_clean(recorded)


def test_a_refusal_from_the_service_is_shown_as_its_message(page: Page, server: str, recorded: Recorded):
    # The page passes its own ?model= on: a model that takes numbers, not pictures, answers 422.
    open_page(page, server + "/?model=linear_system")
    draw(page, DIGITS["1"])
    message = page.get_by_test_id("message")
    expect(message).to_contain_text("422")
    expect(message).to_contain_text("does not take images")
    expect(page.get_by_test_id("prediction")).to_be_empty()
    check_clean(recorded, allowed_errors=("status of 422",))


def test_a_service_without_a_loadable_model_says_it_is_not_ready(page: Page, workdir, recorded: Recorded):
    broken = workdir / "broken-models"
    shutil.copytree(COMMITTED_MODELS / "mnist_mlp", broken / "mnist_mlp", ignore=shutil.ignore_patterns(".tmp-*"))
    for graph in broken.glob("mnist_mlp/*/model.onnx"):
        graph.write_bytes(graph.read_bytes() + b"corrupt")  # no longer matches its sha256
    with gunicorn(broken, workdir, ready_status=503) as broken_server:
        open_page(page, broken_server.url + "/")
        message = page.get_by_test_id("message")
        expect(message).to_contain_text("not ready")
        draw(page, DIGITS["7"])
        expect(message).to_contain_text("no loadable version")
        expect(page.get_by_test_id("prediction")).to_be_empty()
    check_clean(recorded, allowed_errors=("status of 503",))
