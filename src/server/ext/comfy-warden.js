// comfy-warden's extension for the stock ComfyUI frontend (served at /warden/ext/comfy-warden.js
// and added to ComfyUI's /extensions list by comfy-warden).
//
// It shows who is signed in, offers "Log out" (and "API token" to users whose role allows
// tokens) in a small badge and in ComfyUI's menu, and sends the browser to the login page when
// the session has ended instead of leaving a canvas that can no longer talk to the server.
//
// Everything that touches the frontend is feature-detected and wrapped in try/catch: when a
// frontend version lacks a hook, the extension falls back to a small fixed badge, and when
// anything fails it fails quietly (a console warning) without breaking ComfyUI.

const LOGIN = '/login';
const ME = '/warden/me';
const TOKEN_PAGE = '/warden/token';
const BADGE_ID = 'comfy-warden-user';
const MENU_ID = 'comfy-warden-menu';

let leaving = false;
let me = null;

function warn(...args) {
  try {
    console.warn('[comfy-warden]', ...args);
  } catch {
    // nothing to do
  }
}

function comfy() {
  try {
    return window.comfyAPI || {};
  } catch {
    return {};
  }
}

function theApp() {
  return comfy().app?.app ?? null;
}

function theApi() {
  return comfy().api?.api ?? null;
}

// ----- session end → login page -------------------------------------------------------------

/** Leaves for the login page once, coming back here after signing in. */
function toLogin() {
  if (leaving) return;
  leaving = true;
  const here = location.pathname + location.search;
  location.assign(LOGIN + '?next=' + encodeURIComponent(here || '/'));
}

/** The same-origin path of a fetch/XHR target, or null. */
function sameOriginPath(target) {
  try {
    const raw =
      typeof target === 'string'
        ? target
        : target instanceof URL
          ? target.href
          : target && target.url;
    const url = new URL(raw, location.href);
    return url.origin === location.origin ? url.pathname : null;
  } catch {
    return null;
  }
}

/**
 * A 401 seen by the page. comfy-warden's own 401 (its `WWW-Authenticate` realm) means the
 * session is gone: go and sign in. Any other 401 from `/api/*` (one ComfyUI itself sent, say) is
 * checked with `/warden/me` first, whose 401 then leads to the same place, so a ComfyUI answer
 * alone can never bounce the page between the canvas and the sign-in page.
 */
function onUnauthorized(status, path, authenticate) {
  if (status !== 401 || path === null) return;
  if (/comfy-warden/i.test(authenticate || '')) {
    toLogin();
  } else if (path.startsWith('/api/')) {
    confirmSession();
  }
}

let lastCheck = 0;
/** Asks `/warden/me` (at most every 10 s); the fetch watch acts on its answer. */
function confirmSession() {
  const now = Date.now();
  if (now - lastCheck < 10000) return;
  lastCheck = now;
  void whoAmI();
}

function watchFetch() {
  const original = window.fetch;
  if (typeof original !== 'function' || original.__comfyWarden) return;
  const wrapped = async function (input, init) {
    const resp = await original.call(window, input, init);
    try {
      onUnauthorized(resp.status, sameOriginPath(input), resp.headers.get('www-authenticate'));
    } catch (e) {
      warn('fetch watch', e);
    }
    return resp;
  };
  wrapped.__comfyWarden = true;
  window.fetch = wrapped;
}

/** axios (used by the frontend for /internal/* calls) goes through XMLHttpRequest. */
function watchXhr() {
  try {
    const proto = window.XMLHttpRequest?.prototype;
    if (!proto || proto.send.__comfyWarden) return;
    const send = proto.send;
    const wrapped = function (...args) {
      try {
        this.addEventListener('loadend', () => {
          try {
            onUnauthorized(
              this.status,
              sameOriginPath(this.responseURL),
              this.getResponseHeader('www-authenticate')
            );
          } catch {
            // fail quietly
          }
        });
      } catch {
        // fail quietly
      }
      return send.apply(this, args);
    };
    wrapped.__comfyWarden = true;
    proto.send = wrapped;
  } catch (e) {
    warn('XHR watch', e);
  }
}

/** A WebSocket that keeps reconnecting may mean the session ended: ask once in a while. */
function watchSocket() {
  const api = theApi();
  if (!api || typeof api.addEventListener !== 'function') return;
  try {
    api.addEventListener('reconnecting', confirmSession);
  } catch (e) {
    warn('socket watch', e);
  }
}

// ----- who is signed in -----------------------------------------------------------------------

async function whoAmI() {
  const ctl = typeof AbortController === 'function' ? new AbortController() : null;
  const timer = ctl ? setTimeout(() => ctl.abort(), 5000) : null;
  try {
    const resp = await fetch(ME, {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
      signal: ctl?.signal
    });
    if (!resp.ok) return null;
    const body = await resp.json();
    return body && typeof body.user === 'string' ? body : null;
  } catch {
    return null;
  } finally {
    if (timer) clearTimeout(timer);
  }
}

function mayCreateTokens(who) {
  return Array.isArray(who?.permissions) && who.permissions.includes('api_tokens');
}

// ----- log out --------------------------------------------------------------------------------

function notify(detail) {
  warn(detail);
  try {
    const toast = theApp()?.extensionManager?.toast;
    if (toast && typeof toast.add === 'function') {
      toast.add({ severity: 'error', summary: 'comfy-warden', detail, life: 6000 });
      return;
    }
  } catch {
    // fall through to the plain alert
  }
  try {
    window.alert(detail);
  } catch {
    // nothing else to try
  }
}

async function logOut() {
  try {
    const resp = await fetch('/logout', {
      method: 'POST',
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' }
    });
    if (resp.ok || resp.status === 401) {
      leaving = true;
      // After a single sign-on session, the answer may name the provider's sign-out page.
      const answer = resp.ok ? await resp.json().catch(() => ({})) : {};
      location.assign(typeof answer.redirect === 'string' ? answer.redirect : LOGIN);
      return;
    }
    notify(`Could not log out (the server answered ${resp.status}). Please try again.`);
  } catch {
    notify('Could not reach the server to log out. Please try again.');
  }
}

function openTokenPage() {
  try {
    window.open(TOKEN_PAGE, '_blank', 'noopener');
  } catch {
    location.assign(TOKEN_PAGE);
  }
}

// ----- the badge ------------------------------------------------------------------------------

const STYLE = `
#${BADGE_ID} { display: inline-flex; align-items: center; flex-shrink: 0;
  font: 12px/1.3 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
#${BADGE_ID}.cw-floating { position: fixed; left: 50%; bottom: 10px; transform: translateX(-50%);
  z-index: 10000; }
#${BADGE_ID} .cw-button { display: inline-flex; align-items: center; gap: 6px; max-width: 14rem;
  padding: 4px 10px; border-radius: 999px; cursor: pointer; white-space: nowrap;
  border: 1px solid var(--border-color, #4e4e4e); background: var(--comfy-input-bg, #222);
  color: var(--input-text, var(--fg-color, #ddd)); font: inherit; }
#${BADGE_ID} .cw-button:hover { filter: brightness(1.2); }
#${BADGE_ID} .cw-button:focus-visible, #${MENU_ID} .cw-item:focus-visible {
  outline: 2px solid #4a8fe7; outline-offset: 1px; }
#${BADGE_ID} .cw-name { overflow: hidden; text-overflow: ellipsis; }
#${BADGE_ID} .cw-icon { width: 14px; height: 14px; flex-shrink: 0; }
#${MENU_ID} { position: fixed; min-width: 12rem; max-width: calc(100vw - 8px); padding: 6px;
  border-radius: 8px; z-index: 10001; display: none;
  font: 13px/1.3 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  background: var(--comfy-menu-bg, #353535); color: var(--fg-color, #ddd);
  border: 1px solid var(--border-color, #4e4e4e); box-shadow: 0 6px 24px rgba(0,0,0,.4); }
#${MENU_ID}.cw-open { display: block; }
#${MENU_ID} .cw-who { padding: 4px 8px 8px; color: var(--descrip-text, #a0a0a0);
  border-bottom: 1px solid var(--border-color, #4e4e4e); margin-bottom: 4px;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#${MENU_ID} .cw-who strong { color: var(--fg-color, #ddd); }
#${MENU_ID} .cw-item { display: block; width: 100%; text-align: left; padding: 6px 8px;
  border: 0; border-radius: 4px; background: none; color: inherit; font: inherit;
  text-decoration: none; cursor: pointer; box-sizing: border-box; }
#${MENU_ID} .cw-item:hover, #${MENU_ID} .cw-item:focus { background: var(--comfy-input-bg, #222); }
`;

const ICON =
  '<svg class="cw-icon" viewBox="0 0 16 16" aria-hidden="true" focusable="false">' +
  '<circle cx="8" cy="5" r="3" fill="currentColor"/>' +
  '<path d="M2 14.5c0-3 2.7-5 6-5s6 2 6 5z" fill="currentColor"/></svg>';

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function buildMenu(who) {
  const menu = el('div', { id: MENU_ID, role: 'menu', 'aria-label': 'Account' });
  if (who) {
    const line = el('div', { class: 'cw-who' }, 'Signed in as ');
    line.append(el('strong', {}, who.user));
    menu.append(line);
  }
  if (mayCreateTokens(who)) {
    menu.append(
      el(
        'a',
        {
          class: 'cw-item cw-token',
          role: 'menuitem',
          href: TOKEN_PAGE,
          target: '_blank',
          rel: 'noopener'
        },
        'API token'
      )
    );
  }
  const out = el('button', { type: 'button', class: 'cw-item cw-logout', role: 'menuitem' }, 'Log out');
  out.addEventListener('click', () => void logOut());
  menu.append(out);
  return menu;
}

/**
 * The badge (a button with the user's name) and its menu. The menu lives in <body> with a fixed
 * position, so no scrolling or clipping container of the top bar can hide it.
 */
function buildBadge(who) {
  if (!document.getElementById('comfy-warden-style')) {
    const style = el('style', { id: 'comfy-warden-style' });
    style.textContent = STYLE;
    document.head.append(style);
  }
  const root = el('div', { id: BADGE_ID, 'data-user': who ? who.user : '' });
  const button = el('button', {
    type: 'button',
    class: 'cw-button',
    'aria-haspopup': 'menu',
    'aria-expanded': 'false',
    'aria-controls': MENU_ID,
    title: who ? `Signed in as ${who.user}` : 'Account'
  });
  button.innerHTML = ICON;
  button.append(el('span', { class: 'cw-name' }, who ? who.user : 'Account'));
  root.append(button);
  const menu = buildMenu(who);
  document.body.append(menu);

  const isOpen = () => menu.classList.contains('cw-open');
  const setOpen = (open) => {
    if (open) {
      const r = button.getBoundingClientRect();
      menu.style.right = `${Math.max(4, window.innerWidth - r.right)}px`;
      if (r.top > window.innerHeight / 2) {
        menu.style.top = 'auto';
        menu.style.bottom = `${window.innerHeight - r.top + 6}px`;
      } else {
        menu.style.bottom = 'auto';
        menu.style.top = `${r.bottom + 6}px`;
      }
    }
    menu.classList.toggle('cw-open', open);
    button.setAttribute('aria-expanded', String(open));
    if (open) menu.querySelector('.cw-item')?.focus();
  };
  button.addEventListener('click', (e) => {
    e.stopPropagation();
    setOpen(!isOpen());
  });
  menu.addEventListener('keydown', (e) => {
    const items = [...menu.querySelectorAll('.cw-item')];
    const at = items.indexOf(document.activeElement);
    if (e.key === 'Escape') {
      setOpen(false);
      button.focus();
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const step = e.key === 'ArrowDown' ? 1 : -1;
      items[(at + step + items.length) % items.length]?.focus();
    }
  });
  document.addEventListener('click', (e) => {
    if (isOpen() && !root.contains(e.target) && !menu.contains(e.target)) setOpen(false);
  });
  window.addEventListener('resize', () => setOpen(false));
  return root;
}

/** The top bar's area for extension elements, when this frontend has one and shows it. */
function topBarHost() {
  try {
    const host = theApp()?.menu?.element;
    if (host instanceof HTMLElement && host.isConnected && host.offsetParent !== null) {
      return host;
    }
  } catch {
    // no such hook in this frontend
  }
  return null;
}

/** Puts the badge into the top bar, or fixed in a corner when there is none (or it is hidden). */
function place(badge) {
  try {
    const host = topBarHost();
    if (host) {
      if (badge.parentElement !== host) host.append(badge);
      badge.classList.remove('cw-floating');
    } else {
      if (badge.parentElement !== document.body) document.body.append(badge);
      badge.classList.add('cw-floating');
    }
  } catch (e) {
    warn('badge placement', e);
  }
}

function mountBadge() {
  try {
    if (document.getElementById(BADGE_ID)) return;
    const badge = buildBadge(me);
    place(badge);
    // The top bar can appear, move or be hidden (settings, focus mode): follow it.
    setInterval(() => place(badge), 2000);
  } catch (e) {
    warn('badge', e);
  }
}

// ----- ComfyUI's menu -------------------------------------------------------------------------

function extension() {
  const commands = [
    {
      id: 'ComfyWarden.Logout',
      label: 'Log out',
      menubarLabel: me ? `Log out (${me.user})` : 'Log out',
      icon: 'pi pi-sign-out',
      function: logOut
    }
  ];
  if (mayCreateTokens(me)) {
    commands.unshift({
      id: 'ComfyWarden.ApiToken',
      label: 'API token',
      icon: 'pi pi-key',
      function: openTokenPage
    });
  }
  return {
    name: 'comfy-warden.session',
    commands,
    menuCommands: [{ path: ['Account'], commands: commands.map((c) => c.id) }],
    setup() {
      mountBadge();
      watchSocket();
    }
  };
}

async function start() {
  watchFetch();
  watchXhr();
  me = await whoAmI();
  const app = theApp();
  let registered = false;
  if (app && typeof app.registerExtension === 'function') {
    try {
      app.registerExtension(extension());
      registered = true;
    } catch (e) {
      warn('registerExtension', e);
    }
  }
  if (!registered) {
    // No extension API (or it refused us): the badge alone still works.
    const later = () => setTimeout(mountBadge, 1000);
    if (document.readyState === 'loading') {
      document.addEventListener('DOMContentLoaded', later, { once: true });
    } else {
      later();
    }
  }
  // Should setup() never be called (a frontend without it), show the badge anyway.
  setTimeout(mountBadge, 15000);
}

try {
  await start();
} catch (e) {
  warn('start', e);
}
