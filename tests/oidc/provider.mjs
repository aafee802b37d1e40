// A real OpenID provider (the certified `oidc-provider` package) for comfy-warden's tests, on
// loopback over HTTPS with a test CA's certificate.
//
//   node provider.mjs CONFIG.json
//
// CONFIG.json: { "cert": PEM file, "key": PEM file,
//                "clients": [{ client_id, client_secret, redirect_uris, token_endpoint_auth_method,
//                              post_logout_redirect_uris }],
//                "users": { "alice": { "groups": ["comfy-users"], "name": "Alice" } } }
//
// Prints `listening https://127.0.0.1:PORT` once it answers. Users sign in on the provider's own
// page (a form asking only for the user name: this is a test provider), or at once when the
// authorization request carries `login_hint=<user>` (tests without a browser);
// `login_hint=deny` ends the interaction with `error=access_denied`.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const users = config.users;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

let handler = (_req, res) => { res.statusCode = 503; res.end(); };
const server = https.createServer(
  { cert: readFileSync(config.cert), key: readFileSync(config.key) },
  (req, res) => handler(req, res),
);
server.listen(0, '127.0.0.1', () => {
  const issuer = `https://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: config.clients.map((c) => ({
      grant_types: ['authorization_code'],
      response_types: ['code'],
      ...c,
    })),
    jwks: { keys: [jwk] },
    scopes: ['openid', 'profile', 'groups'],
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'], groups: ['groups'] },
    // The claims go into the ID token (comfy-warden reads only the ID token).
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
    cookies: { keys: ['comfy-warden test provider cookie key'] },
    async findAccount(_ctx, id) {
      const u = users[id];
      if (!u) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, preferred_username: u.username ?? id, name: u.name ?? id, groups: u.groups ?? [] };
        },
      };
    },
    // First-party client: no consent screen (the grant is made at once).
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile groups');
      await grant.save();
      return grant;
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>Provider error</title><p id="provider-error">${escape(out.error)}</p>`;
    },
  });
  provider.proxy = false;

  const callback = provider.callback();
  handler = async (req, res) => {
    const url = new URL(req.url, issuer);
    const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (!m) return callback(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      let name = details.params.login_hint;
      if (m[2] && req.method === 'POST') {
        name = new URLSearchParams(await body(req)).get('username');
      }
      if (name === 'deny') {
        return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user declined' }, { mergeWithLastSubmission: false });
      }
      if (name && users[name]) {
        return provider.interactionFinished(req, res, { login: { accountId: name } }, { mergeWithLastSubmission: false });
      }
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(`<!doctype html><title>Test provider sign-in</title>
<h1>Test provider</h1>${name ? '<p id="unknown">unknown user</p>' : ''}
<form method="post" action="/interaction/${details.uid}/login">
<label>User <input id="provider-username" name="username" autofocus></label>
<button id="provider-submit" type="submit">Continue</button></form>`);
    } catch (e) {
      res.statusCode = 400;
      res.end(String(e));
    }
  };
  console.log(`listening ${issuer}`);
});

function body(req) {
  return new Promise((resolve, reject) => {
    let s = '';
    req.on('data', (c) => { s += c; if (s.length > 10000) req.destroy(); });
    req.on('end', () => resolve(s));
    req.on('error', reject);
  });
}

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
