// The single sign-on half of tests/browser.rs: headless Chromium signs in through the test
// OpenID provider's own page (tests/oidc/provider.mjs) and reaches the ComfyUI canvas.
//
// Environment: WARDEN_URL, PROVIDER_URL (the issuer), CHROMIUM, ARTIFACTS, SSO_USER (a provider
// user whose group gives the `user` role). Exit status 0 means every check passed.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const BASE = process.env.WARDEN_URL;
const PROVIDER = process.env.PROVIDER_URL;
const ARTIFACTS = process.env.ARTIFACTS;
const USER = process.env.SSO_USER;
const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_TIMEOUT = 30_000;

if (!BASE || !PROVIDER || !ARTIFACTS || !USER) {
  console.error('WARDEN_URL, PROVIDER_URL, ARTIFACTS and SSO_USER are required');
  process.exit(2);
}
mkdirSync(ARTIFACTS, { recursive: true });

function log(...a) {
  console.log(`[oidc ${new Date().toISOString().slice(11, 23)}]`, ...a);
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  log('ok:', what);
}

async function run() {
  const browser = await chromium.launch({
    executablePath: EXECUTABLE,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync']
  });
  let page;
  try {
    // The provider's certificate comes from the test's own CA, which Chromium does not know.
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: true });
    // Only the daemon and the provider: anything else the frontend asks for is refused.
    await ctx.route(
      (url) => url.origin !== new URL(BASE).origin && url.origin !== new URL(PROVIDER).origin,
      (route) => route.abort('blockedbyclient')
    );
    page = await ctx.newPage();
    await page.goto(BASE + '/', { waitUntil: 'domcontentloaded' });
    check(new URL(page.url()).pathname === '/login', 'a signed-out browser lands on /login');
    const button = page.getByRole('link', { name: 'Sign in with Test provider' });
    await button.waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
    await page.screenshot({ path: join(ARTIFACTS, 'oidc-login.png') });
    await button.click();
    await page.locator('#provider-username').waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
    check(new URL(page.url()).origin === new URL(PROVIDER).origin, 'the button leads to the provider');
    await page.screenshot({ path: join(ARTIFACTS, 'oidc-provider.png') });
    await page.locator('#provider-username').fill(USER);
    await Promise.all([
      page.waitForURL((u) => u.origin === new URL(BASE).origin && u.pathname === '/', { timeout: STEP_TIMEOUT }),
      page.locator('#provider-submit').click()
    ]);
    await page.locator('#graph-canvas').waitFor({ state: 'visible', timeout: 60_000 });
    await page.waitForFunction(() => !!window.comfyAPI?.app?.app?.graph, null, { timeout: 60_000 });
    check(true, 'the ComfyUI canvas is up after single sign-on');
    const me = await page.evaluate(async () => (await fetch('/warden/me')).json());
    check(me.user === USER && me.roles.includes('user'), `signed in as ${USER} with the user role`);
    // (Cookies are per host, not per port: the provider's own cookies for 127.0.0.1 are there too.)
    const ours = (await ctx.cookies(BASE)).filter((c) => c.name.startsWith('comfy_warden')).map((c) => c.name);
    check(
      ours.length === 1 && ours[0] === 'comfy_warden_session',
      `comfy-warden left only its session cookie (the sign-in's own cookie is gone): ${ours}`
    );
    await page.screenshot({ path: join(ARTIFACTS, 'oidc-canvas.png') });
    await ctx.close();
  } catch (e) {
    if (page) {
      try {
        await page.screenshot({ path: join(ARTIFACTS, 'oidc-failure.png') });
        log(`failure at ${page.url()}: ${await page.content()}`.slice(0, 3000));
      } catch {}
    }
    throw e;
  } finally {
    await browser.close();
  }
}

run().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  }
);
