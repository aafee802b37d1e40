// The browser half of tests/it/browser.rs: headless Chromium (Debian's, driven by playwright-core)
// against a running comfy-warden in front of the ComfyUI test double that serves the real
// frontend (comfyui-frontend-package 1.27.10).
//
// Environment (set by tests/it/browser.rs): WARDEN_URL, CHROMIUM, ARTIFACTS (screenshots),
// USERS (JSON [{name, password}]: two users with the "user" role run the full flow, a third
// with the "guest" role sees the extension fall back on a frontend without its hooks),
// REFUSED_IP (an X-Forwarded-For address the IP rules deny).
//
// Queueing is done through the UI: the graph is loaded with the frontend's own `loadApiJson`
// (building it node by node with the mouse would be brittle) and run with the Run button.
// Completion is seen in the queue sidebar (history) and from the WebSocket-driven
// `execution_success` event. Exit status 0 means every check passed.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const BASE = process.env.WARDEN_URL;
const ARTIFACTS = process.env.ARTIFACTS;
const USERS = JSON.parse(process.env.USERS || '[]');
const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_TIMEOUT = 30_000;

const REFUSED_IP = process.env.REFUSED_IP;
if (!BASE || !ARTIFACTS || USERS.length < 3 || !REFUSED_IP) {
  console.error('WARDEN_URL, ARTIFACTS, REFUSED_IP and USERS (three users) are required');
  process.exit(2);
}
mkdirSync(ARTIFACTS, { recursive: true });

function log(...a) {
  console.log(`[e2e ${new Date().toISOString().slice(11, 23)}]`, ...a);
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  log('ok:', what);
}

/** What the canvas pages did wrong: failed requests and console errors, for the report. */
const reports = [];
const openPages = [];

function watch(page, who) {
  const problems = [];
  openPages.push([who, page]);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') {
      const at = m.location()?.url ? ` (at ${m.location().url})` : '';
      problems.push(`console.${m.type()}: ${m.text()}${at}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.stack || e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  if (process.env.E2E_DEBUG) {
    page.on('response', async (r) => {
      const h = r.request().method() === 'GET' ? '' : JSON.stringify(await r.allHeaders());
      log(`${who} ${r.status()} ${r.request().method()} ${r.url()} ${h}`);
    });
  }
  page.on('requestfailed', (r) =>
    problems.push(`failed ${r.method()} ${r.url()}: ${r.failure()?.errorText}`)
  );
  const report = () => {
    if (problems.length) log(`${who}: requests/console problems seen:\n  ` + problems.join('\n  '));
    return problems;
  };
  reports.push(report);
  return report;
}

/** On failure: what each page showed, and what went wrong on the way. */
async function failureEvidence() {
  for (const [who, page] of openPages) {
    try {
      await page.screenshot({ path: join(ARTIFACTS, `failure-${who}.png`) });
      log(`${who}: failure screenshot at ${join(ARTIFACTS, `failure-${who}.png`)} (${page.url()})`);
    } catch {
      // the page is gone
    }
  }
  for (const report of reports) report();
}

const GRAPH = (prefix) => ({
  1: {
    class_type: 'EmptyImage',
    inputs: { width: 64, height: 64, batch_size: 1, color: 3381759 }
  },
  2: { class_type: 'SaveImage', inputs: { filename_prefix: prefix, images: ['1', 0] } }
});

async function signIn(page, user, { screenshot }) {
  await page.goto(BASE + '/', { waitUntil: 'domcontentloaded' });
  check(new URL(page.url()).pathname === '/login', `${user.name}: / sends a signed-out browser to /login`);
  check(new URL(page.url()).searchParams.get('next') === '/', `${user.name}: login keeps next=/`);
  if (screenshot) {
    await page.getByLabel('Password').fill('not the password');
    await page.getByLabel('User name').fill(user.name);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor({ timeout: STEP_TIMEOUT });
    check(
      (await page.getByRole('alert').textContent()).includes('Invalid user name or password'),
      'a wrong password shows a clear error'
    );
    await page.screenshot({ path: join(ARTIFACTS, 'login-error.png') });
    await page.goto(BASE + '/login?next=%2F');
    await page.screenshot({ path: join(ARTIFACTS, 'login.png') });
  }
  await page.getByLabel('User name').fill(user.name);
  await page.getByLabel('Password').fill(user.password);
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/', { timeout: STEP_TIMEOUT }),
    page.getByRole('button', { name: 'Sign in' }).click()
  ]);
}

async function waitForCanvas(page, who) {
  await page.locator('#graph-canvas').waitFor({ state: 'visible', timeout: 60_000 });
  await page.waitForFunction(() => !!window.comfyAPI?.app?.app?.graph, null, {
    timeout: 60_000
  });
  check(new URL(page.url()).pathname === '/', `${who}: the canvas is at / (no user picker)`);
  check(
    (await page.locator('text=/select a user/i').count()) === 0,
    `${who}: no "select a user" screen`
  );
  await dismissWelcome(page);
}

/** A new ComfyUI user is greeted with the template browser (as with ComfyUI itself): close it. */
async function dismissWelcome(page) {
  const mask = page.locator('.p-dialog-mask');
  // The frontend opens it once its settings and workflow have loaded, which on a loaded machine
  // can be well after the canvas shows: wait for the page to go quiet first, then a while more.
  await page.waitForLoadState('networkidle', { timeout: STEP_TIMEOUT }).catch(() => {});
  try {
    await mask.first().waitFor({ state: 'visible', timeout: 5000 });
  } catch {
    return;
  }
  await page.keyboard.press('Escape');
  await mask.first().waitFor({ state: 'detached', timeout: STEP_TIMEOUT });
}

/** Only the daemon under test: anything else the frontend asks for (update checks) is refused. */
async function localOnly(context) {
  await context.route(
    (url) => url.origin !== new URL(BASE).origin,
    (route) => route.abort('blockedbyclient')
  );
}

async function checkBadge(page, who, { tokens, screenshot }) {
  const badge = page.locator('#comfy-warden-user');
  await badge.waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
  check((await badge.locator('.cw-name').textContent()) === who, `${who}: the badge names ${who}`);
  check(
    (await badge.evaluate((e) => !e.classList.contains('cw-floating'))) === true,
    `${who}: the badge sits in ComfyUI's top bar`
  );
  const menu = page.locator('#comfy-warden-menu');
  await badge.locator('.cw-button').click();
  // A trial click checks that a person could really click it (not covered, not clipped).
  await menu.locator('.cw-logout').click({ trial: true, timeout: STEP_TIMEOUT });
  check(true, `${who}: the badge opens a menu with "Log out"`);
  if (screenshot) await page.screenshot({ path: join(ARTIFACTS, 'badge-menu.png') });
  const tokenLinks = await menu.locator('a.cw-token').count();
  check(tokens ? tokenLinks === 1 : tokenLinks === 0, `${who}: API token entry ${tokens ? 'shown' : 'hidden'}`);
  if (tokens) {
    check(
      (await menu.locator('a.cw-token').getAttribute('href')) === '/warden/token',
      `${who}: API token links to /warden/token`
    );
  }
  await page.keyboard.press('Escape');

  // ComfyUI's own menu has the Account entries too.
  await page.locator('.comfyui-logo-wrapper').click();
  const account = page.locator('.comfy-command-menu').getByText('Account', { exact: true });
  await account.waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
  await account.hover();
  await page
    .locator('.comfy-command-menu')
    .getByText(`Log out (${who})`, { exact: true })
    .waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
  check(true, `${who}: ComfyUI's menu has Account → Log out (${who})`);
  await page.keyboard.press('Escape');
  await page.mouse.click(640, 500);
}

async function queueThroughUi(page, who, prefix) {
  const done = page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const api = window.comfyAPI.api.api;
        const t = setTimeout(() => reject(new Error('no execution_success in 30 s')), 30000);
        api.addEventListener('execution_success', (e) => {
          clearTimeout(t);
          resolve(e.detail?.prompt_id ?? true);
        });
      })
  );
  await page.evaluate(
    async ([graph]) => {
      await window.comfyAPI.app.app.loadApiJson(graph, 'comfy-warden e2e');
    },
    [GRAPH(prefix)]
  );
  const run = page.locator('[data-testid="queue-button"] button').first();
  await run.click();
  const promptId = await done;
  check(!!promptId, `${who}: the run finished (execution_success over the WebSocket)`);
  return promptId;
}

async function openQueue(page) {
  await page.locator('.queue-tab-button').click();
  return page.locator('.task-item');
}

/** The lockout and refused-address pages, as a browser sees them (from addresses of their own). */
async function pagesOfWarden(browser) {
  const locked = await browser.newContext({
    viewport: { width: 390, height: 760 },
    extraHTTPHeaders: { 'X-Forwarded-For': '198.51.100.20' }
  });
  await localOnly(locked);
  const page = await locked.newPage();
  await page.goto(BASE + '/login?next=%2F');
  let text = '';
  for (let i = 0; i < 4 && !/Too many failed sign-ins/.test(text); i++) {
    await page.getByLabel('User name').fill('mallory');
    await page.getByLabel('Password').fill(`guess ${i}`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor({ timeout: STEP_TIMEOUT });
    text = await page.getByRole('alert').textContent();
  }
  check(
    /Too many failed sign-ins\. Try again in \d+ seconds\./.test(text),
    `a locked-out sign-in says how long to wait ("${text.trim()}")`
  );
  await page.screenshot({ path: join(ARTIFACTS, 'login-locked-mobile.png') });
  await locked.close();

  const refused = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    extraHTTPHeaders: { 'X-Forwarded-For': REFUSED_IP }
  });
  await localOnly(refused);
  const page2 = await refused.newPage();
  const resp = await page2.goto(BASE + '/');
  check(resp.status() === 403, 'a refused address gets 403');
  check(
    (await page2.getByRole('heading').textContent()).includes('Access not allowed'),
    'a refused address sees a page saying so'
  );
  await page2.screenshot({ path: join(ARTIFACTS, 'address-refused.png') });
  await refused.close();
}

/**
 * A frontend without the hooks the extension uses (here: `window.comfyAPI`, the legacy
 * extension API, made unavailable): ComfyUI still works, the badge falls back to a fixed corner
 * element, and "Log out" still works. The user is a guest: no "API token" entry.
 */
async function degradedFrontend(browser, user) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await localOnly(ctx);
  await ctx.addInitScript(() => {
    // The frontend still fills window.comfyAPI.<module>.<name>, but `app` and `api` always read
    // as fresh empty objects: to the extension it is a frontend without these hooks.
    const sink = {};
    for (const name of ['app', 'api']) {
      Object.defineProperty(sink, name, { get: () => ({}), set: () => {} });
    }
    window.comfyAPI = sink;
  });
  const page = await ctx.newPage();
  const report = watch(page, user.name);
  await signIn(page, user, { screenshot: false });
  await page.locator('#graph-canvas').waitFor({ state: 'visible', timeout: 60_000 });
  await dismissWelcome(page);
  const badge = page.locator('#comfy-warden-user');
  await badge.waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
  check((await badge.locator('.cw-name').textContent()) === user.name, `${user.name}: fallback badge names ${user.name}`);
  check(
    await badge.evaluate((e) => e.classList.contains('cw-floating')),
    `${user.name}: without the extension API the badge is a fixed corner element`
  );
  await badge.locator('.cw-button').click();
  const menu = page.locator('#comfy-warden-menu');
  await menu.locator('.cw-logout').click({ trial: true, timeout: STEP_TIMEOUT });
  check((await menu.locator('a.cw-token').count()) === 0, `${user.name}: a guest gets no API token entry`);
  await page.screenshot({ path: join(ARTIFACTS, 'badge-fallback.png') });
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/login', { timeout: STEP_TIMEOUT }),
    menu.locator('.cw-logout').click()
  ]);
  check(true, `${user.name}: "Log out" from the fallback badge leads to the login page`);
  await ctx.close();
  return report();
}

async function run() {
  // playwright gives every launch a fresh temporary --user-data-dir of its own (it refuses one
  // passed in args), and every context below is a separate, empty cookie jar.
  const browser = await chromium.launch({
    executablePath: EXECUTABLE,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync'
    ]
  });
  try {
    const [alice, bob] = USERS;

    // ---- first user: sign in, canvas, badge, settings, queue, history, logout -------------
    const ctxA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await localOnly(ctxA);
    const pageA = await ctxA.newPage();
    const reportA = watch(pageA, alice.name);
    await signIn(pageA, alice, { screenshot: true });
    await waitForCanvas(pageA, alice.name);
    await checkBadge(pageA, alice.name, { tokens: true, screenshot: true });

    await pageA.evaluate(() =>
      window.comfyAPI.app.app.extensionManager.setting.set('Comfy.TextareaWidget.FontSize', 17)
    );
    const promptA = await queueThroughUi(pageA, alice.name, 'e2e_alice');
    await pageA.waitForTimeout(300);
    await pageA.screenshot({ path: join(ARTIFACTS, 'canvas.png') });
    const tasksA = await openQueue(pageA);
    await tasksA.first().waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
    check((await tasksA.count()) === 1, `${alice.name}: the queue sidebar shows her finished run`);
    await pageA.waitForTimeout(300);
    await pageA.screenshot({ path: join(ARTIFACTS, 'canvas-queue.png') });
    const historyA = await pageA.evaluate(() => window.comfyAPI.api.api.getHistory(200));
    check(
      historyA.History.length === 1 && historyA.History[0].prompt[1] === promptA,
      `${alice.name}: history holds her prompt ${promptA}`
    );

    // ---- second user: none of the first user's queue, history or settings ------------------
    const ctxB = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await localOnly(ctxB);
    const pageB = await ctxB.newPage();
    const reportB = watch(pageB, bob.name);
    await signIn(pageB, bob, { screenshot: false });
    await waitForCanvas(pageB, bob.name);
    await checkBadge(pageB, bob.name, { tokens: true });
    const sizeB = await pageB.evaluate(() =>
      window.comfyAPI.app.app.extensionManager.setting.get('Comfy.TextareaWidget.FontSize')
    );
    check(sizeB !== 17, `${bob.name}: his settings are his own (text size ${sizeB}, not alice's 17)`);
    const tasksB = await openQueue(pageB);
    await pageB.getByText(/no tasks/i).first().waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
    check((await tasksB.count()) === 0, `${bob.name}: the queue sidebar shows none of alice's runs`);
    await pageB.screenshot({ path: join(ARTIFACTS, 'canvas-second-user.png') });
    const historyB = await pageB.evaluate(() => window.comfyAPI.api.api.getHistory(200));
    check(historyB.History.length === 0, `${bob.name}: his history is empty`);
    const promptB = await queueThroughUi(pageB, bob.name, 'e2e_bob');
    await pageB.locator('.task-item').first().waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
    check((await pageB.locator('.task-item').count()) === 1, `${bob.name}: only his own run is listed`);
    check(promptB !== promptA, `${bob.name}: a run of his own`);

    // alice reloads: her setting persisted on the server, still one run, not bob's.
    await pageA.reload();
    await waitForCanvas(pageA, alice.name);
    check(
      (await pageA.evaluate(() =>
        window.comfyAPI.app.app.extensionManager.setting.get('Comfy.TextareaWidget.FontSize')
      )) === 17,
      `${alice.name}: her setting survived a reload`
    );
    const historyA2 = await pageA.evaluate(() => window.comfyAPI.api.api.getHistory(200));
    check(historyA2.History.length === 1, `${alice.name}: still only her own run after bob's`);

    // ---- session ended elsewhere: the next API call sends the canvas to the login page -----
    await pageB.request.post(BASE + '/logout', { headers: { Accept: 'application/json' } });
    await Promise.all([
      pageB.waitForURL((u) => u.pathname === '/login', { timeout: STEP_TIMEOUT }),
      pageB.evaluate(() => window.comfyAPI.api.api.getQueue().catch(() => null))
    ]);
    check(
      new URL(pageB.url()).searchParams.get('next') === '/',
      `${bob.name}: an ended session leads to /login?next=/`
    );

    // ---- log out through the badge ------------------------------------------------------------
    if (process.env.E2E_DEBUG) {
      log(await pageA.locator('#comfy-warden-user').evaluate((e) => e.outerHTML + ' parent=' + e.parentElement.className + ' rect=' + JSON.stringify(e.getBoundingClientRect())));
      await pageA.locator('#comfy-warden-user').screenshot({ path: join(ARTIFACTS, 'debug-badge.png') });
    }
    await pageA.locator('#comfy-warden-user .cw-button').click();
    await Promise.all([
      pageA.waitForURL((u) => u.pathname === '/login', { timeout: STEP_TIMEOUT }),
      pageA.locator('#comfy-warden-menu .cw-logout').click()
    ]);
    await pageA.getByLabel('User name').waitFor({ state: 'visible' });
    check(true, `${alice.name}: "Log out" leads back to the login page`);
    await pageA.goto(BASE + '/');
    check(new URL(pageA.url()).pathname === '/login', `${alice.name}: signed out for real`);

    await pagesOfWarden(browser);
    const reportC = await degradedFrontend(browser, USERS[2]);

    const ours = [...reportA(), ...reportB(), ...reportC].filter((p) => /comfy-warden/.test(p));
    check(ours.length === 0, `no errors from comfy-warden's extension (${ours.join('; ')})`);
    await ctxA.close();
    await ctxB.close();
  } catch (e) {
    await failureEvidence();
    throw e;
  } finally {
    await browser.close();
  }
}

run().then(
  () => {
    log('all browser checks passed');
    process.exit(0);
  },
  (e) => {
    console.error('browser test failed:', e);
    process.exit(1);
  }
);
