// The browser tests' Chromium (test/browser.ts): the npm-shipped build starts and renders a page with text in its
// bundled font, whatever is installed on the machine, so the report test's fallback is exercised on every run;
// KD_CHROMIUM naming a missing file fails with the fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chooseChromium, launchChromium, SYSTEM_CHROMIUM } from '../browser.js';

test('KD_CHROMIUM naming a missing file is refused with the fix', async () => {
  await assert.rejects(
    chooseChromium({ KD_CHROMIUM: '/nonexistent/chromium' }),
    /KD_CHROMIUM=\/nonexistent\/chromium: no such file.*KD_CHROMIUM=npm/,
  );
});

test('without KD_CHROMIUM the system Chromium is used when present, else the npm build', async () => {
  const choice = await chooseChromium({});
  assert.equal(choice.source, existsSync(SYSTEM_CHROMIUM) ? 'system' : 'npm');
});

test('the npm-shipped Chromium starts, renders a page with text and SVG, and reports no console errors', async (t) => {
  const started = performance.now();
  const { browser, choice } = await launchChromium({ KD_CHROMIUM: 'npm' });
  t.diagnostic(`chromium: ${choice.description}, ${browser.version()}, started in ${Math.round(performance.now() - started)} ms`);
  assert.equal(choice.source, 'npm');
  assert.match(browser.version(), /^\d+\.\d+\.\d+\.\d+$/);
  try {
    const page = await browser.newPage({ viewport: { width: 640, height: 480 } });
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.setContent(
      '<p id="t" style="font: 20px \'Open Sans\'; display: inline-block">kd distills</p>' +
        '<svg width="200" height="120"><rect id="r" x="10" y="10" width="150" height="100"/></svg>' +
        "<script>document.getElementById('t').dataset.sum = String(2 + 3);</script>",
    );
    assert.equal(await page.locator('#t').getAttribute('data-sum'), '5', 'scripts run');
    const rect = await page.locator('#r').boundingBox();
    assert.deepEqual(rect && [rect.width, rect.height], [150, 100]);
    // Text with a real font has a width; a Chromium without fonts lays it out at (near) zero.
    const text = await page.locator('#t').boundingBox();
    assert.ok(text && text.width > 60 && text.height > 15, `text box ${JSON.stringify(text)}`);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
