// The second factor in headless Chromium (tests/browser.rs, `second_factor_in_the_browser`):
// a user whose role requires TOTP signs in, is led through enrolment (QR code, key, one code
// to confirm; a wrong code first), gets the recovery codes once, then signs in again in fresh
// browsers with a code on the second step and with a recovery code. Codes are computed by
// Debian's oathtool, an implementation independent of comfy-warden's.
//
// Environment: WARDEN_URL, CHROMIUM, ARTIFACTS (screenshots), USER_NAME, USER_PASSWORD.
// Exit status 0 means every check passed.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const BASE = process.env.WARDEN_URL;
const ARTIFACTS = process.env.ARTIFACTS;
const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const NAME = process.env.USER_NAME;
const PASSWORD = process.env.USER_PASSWORD;
const STEP_TIMEOUT = 30_000;
if (!BASE || !ARTIFACTS || !NAME || !PASSWORD) {
  console.error('WARDEN_URL, ARTIFACTS, USER_NAME and USER_PASSWORD are required');
  process.exit(2);
}
mkdirSync(ARTIFACTS, { recursive: true });

function log(...a) {
  console.log(`[totp ${new Date().toISOString().slice(11, 23)}]`, ...a);
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  log('ok:', what);
}

/** The code of the step `offset` steps from now, by oathtool. */
function code(key, offset = 0) {
  const at = Math.floor(Date.now() / 1000) + offset * 30;
  return execFileSync('oathtool', ['--totp', '-b', '-N', `@${at}`, key]).toString().trim();
}

/** Waits until at least 15 s remain in the current 30 s step. */
async function earlyInStep() {
  while (Math.floor(Date.now() / 1000) % 30 >= 15) await new Promise((r) => setTimeout(r, 200));
}

async function freshPage(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  await ctx.route(
    (url) => url.origin !== new URL(BASE).origin,
    (route) => route.abort('blockedbyclient')
  );
  return [ctx, await ctx.newPage()];
}

async function password(page) {
  await page.goto(`${BASE}/login?next=/warden/me`);
  await page.fill('#username', NAME);
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
}

async function signedIn(page, how) {
  await page.waitForURL(`${BASE}/warden/me`, { timeout: STEP_TIMEOUT });
  const me = await page.evaluate(() => fetch('/warden/me').then((r) => r.json()));
  check(me.user === NAME, `${how}: signed in as ${NAME}`);
}

const browser = await chromium.launch({
  executablePath: EXECUTABLE,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
});
try {
  // ---- enrolment right after the password --------------------------------------------------
  const [ctx1, page] = await freshPage(browser);
  await password(page);
  check((await page.locator('h1').textContent()).includes('Set up a second factor'), 'the enrolment page follows the password');
  const qr = page.locator('#totp-qr svg');
  await qr.waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
  const box = await qr.boundingBox();
  check(box && box.width >= 150 && box.height >= 150, 'the QR code is shown');
  const key = (await page.locator('#totp-key').inputValue()).replace(/\s+/g, '');
  check(/^[A-Z2-7]{32}$/.test(key), 'the key is shown for typing in');
  check(!(await page.content()).includes(PASSWORD), 'the password is not in the page');
  await page.screenshot({ path: join(ARTIFACTS, 'totp-enrol.png'), fullPage: true });

  // Nothing else is reachable before enrolment.
  const [ctxOther, other] = await freshPage(browser);
  await other.goto(`${BASE}/warden/me`);
  check(new URL(other.url()).pathname === '/login', 'without a session the login page comes first');
  await ctxOther.close();

  await earlyInStep();
  const right = code(key);
  await page.fill('#totp', right === '000000' ? '111111' : '000000');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  check((await page.locator('#form-error').textContent()).includes('Invalid code'), 'a wrong code is refused');
  check((await page.locator('#totp-key').inputValue()).replace(/\s+/g, '') === key, 'the same key is offered again');
  await page.fill('#totp', right);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const codes = await page.locator('#recovery-codes li').allTextContents();
  check(codes.length === 10, 'ten recovery codes are shown once');
  await page.screenshot({ path: join(ARTIFACTS, 'totp-recovery-codes.png'), fullPage: true });
  await Promise.all([page.waitForNavigation(), page.click('#continue')]);
  await signedIn(page, 'enrolment');
  await ctx1.close();

  // ---- a code on the second step -----------------------------------------------------------
  const [ctx2, page2] = await freshPage(browser);
  await password(page2);
  const field = page2.locator('#totp');
  await field.waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
  check((await page2.locator('form').getAttribute('action')) === '/login/second-factor', 'the second step asks for the code');
  check(!(await page2.content()).includes(PASSWORD), 'the second step does not carry the password');
  await page2.screenshot({ path: join(ARTIFACTS, 'totp-code.png'), fullPage: true });
  await field.fill(code(key, 1));
  await Promise.all([page2.waitForNavigation(), page2.click('button[type=submit]')]);
  await signedIn(page2, 'a code');
  await ctx2.close();

  // ---- a recovery code in place of a code --------------------------------------------------
  const [ctx3, page3] = await freshPage(browser);
  await password(page3);
  await page3.fill('#totp', codes[0].trim());
  await Promise.all([page3.waitForNavigation(), page3.click('button[type=submit]')]);
  await signedIn(page3, 'a recovery code');
  await ctx3.close();
  log('all second-factor checks passed');
} finally {
  await browser.close();
}
