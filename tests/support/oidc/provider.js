// A real OpenID provider for Sealgate's tests: panva's certified oidc-provider on loopback.
//
//   node provider.js CONFIG.json
//
// Listens on 127.0.0.1, port 0 (the kernel picks a free one), and prints one JSON line on
// standard output when it is ready: {"issuer", "port", "kids", "signing_kid", "node"}.
// Everything else (oidc-provider's notices and warnings, our own log) goes to standard error,
// so standard output carries that line alone. SIGTERM or SIGINT stops it. tests/support/oidc.py
// writes the configuration and runs it; docs/testing.md describes the configuration file.
//
// The protocol is oidc-provider's: discovery, JWKS, the authorization, token and userinfo
// endpoints, PKCE, the interaction policy (login, then consent). What this file adds is what
// the library leaves to each deployment: the accounts, the signing keys, and the interaction
// pages (devInteractions is off: it accepts any password, so a wrong one could not be refused).
// The pages are plain HTML forms without script, so httpx and Chromium fill them alike.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider from 'oidc-provider';

// oidc-provider's notices go through console.info / console.log: keep standard output for
// the ready line.
console.info = console.error;
console.log = console.error;

const STANDARD_SCOPES = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name'],
};

function readConfig(path) {
  const config = JSON.parse(fs.readFileSync(path, 'utf8'));
  return {
    tls: config.tls ?? null,
    clients: config.clients ?? [],
    accounts: config.accounts ?? [],
    scopes: config.scopes ?? {},
    signingKeys: config.signing_keys ?? 2,
    claimsInIdToken: config.claims_in_id_token ?? true,
  };
}

// RS256 keys made at start; all are published, the first signs (oidc-provider signs with the
// first key of an algorithm), so a relying party must pick the key by its kid.
function makeKeys(count) {
  const keys = [];
  for (let i = 0; i < count; i += 1) {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = privateKey.export({ format: 'jwk' });
    keys.push({ ...jwk, kid: crypto.randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' });
  }
  return keys;
}

class Accounts {
  constructor(accounts) {
    this.accounts = accounts;
  }

  // The account whose sub or e-mail address (any case) is `login`, if `password` is its own.
  authenticate(login, password) {
    const wanted = login.trim().toLowerCase();
    const account = this.accounts.find(
      (candidate) => candidate.sub === login.trim()
        || (candidate.email ?? '').toLowerCase() === wanted,
    );
    return account && sameSecret(account.password, password) ? account : undefined;
  }

  // oidc-provider's findAccount: the claims it filters by the granted scopes.
  find(sub) {
    const account = this.accounts.find((candidate) => candidate.sub === sub);
    if (!account) return undefined;
    const claims = { sub: account.sub, ...account.claims };
    for (const name of ['email', 'email_verified', 'name']) {
      if (account[name] !== undefined) claims[name] = account[name];
    }
    return { accountId: account.sub, claims: async () => claims };
  }
}

function sameSecret(expected, given) {
  const digest = (value) => crypto.createHash('sha256').update(String(value ?? '')).digest();
  return expected !== undefined && crypto.timingSafeEqual(digest(expected), digest(given));
}

function providerConfiguration(config, accounts) {
  return {
    clients: config.clients,
    jwks: { keys: makeKeys(config.signingKeys) },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    claims: { ...STANDARD_SCOPES, ...config.scopes },
    conformIdTokenClaims: !config.claimsInIdToken,
    findAccount: (ctx, sub) => accounts.find(sub),
    // The authorization code flow only, and never without PKCE (S256).
    responseTypes: ['code'],
    pkce: { methods: ['S256'], required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // The provider's own error page, without the request's details.
    renderError: (ctx, out) => {
      const text = `${out.error}: ${out.error_description ?? ''}`;
      ctx.type = 'html';
      ctx.body = page('Error', `<p role="alert">${escape(text)}</p>`);
    },
  };
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head>
<body><h1>${escape(title)}</h1>
${body}
</body></html>
`;
}

function loginPage(uid, clientId, error) {
  const alert = error ? `<p role="alert">${escape(error)}</p>\n` : '';
  return page('Sign in', `<p>to continue to <b>${escape(clientId)}</b></p>
${alert}<form method="post" action="/interaction/${escape(uid)}/login">
<label>Account or e-mail address
<input name="login" autocomplete="username" required autofocus></label>
<label>Password
<input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>`);
}

function consentPage(uid, clientId, scopes, claims) {
  const asked = [...scopes, ...claims].map((item) => `<li>${escape(item)}</li>`).join('');
  return page('Allow access', `<p><b>${escape(clientId)}</b> asks for:</p>
<ul>${asked}</ul>
<form method="post" action="/interaction/${escape(uid)}/confirm">
<button type="submit">Allow</button>
</form>
<form method="post" action="/interaction/${escape(uid)}/abort">
<button type="submit">Deny</button>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16384) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // No form-action: Chromium applies it to the redirects after a post too, and the consent
    // post ends at the client's redirect URI, another origin.
    'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  });
  res.end(html);
}

function sendError(res, status, text) {
  send(res, status, page('Error', `<p role="alert">${escape(text)}</p>`));
}

// The grant for what the consent prompt found missing, as in oidc-provider's example routes.
async function grantConsent(provider, details) {
  const { prompt, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const { missingOIDCScope, missingOIDCClaims, missingResourceScopes = {} } = prompt.details;
  if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
  if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missingResourceScopes)) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return details.grantId ? {} : { grantId };
}

async function interaction(provider, accounts, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return sendError(res, 400, 'unknown interaction');
  const clientId = details.params.client_id;
  const { name } = details.prompt;
  if (req.method === 'GET' && !action) {
    if (name === 'login') return send(res, 200, loginPage(uid, clientId));
    const { missingOIDCScope = [], missingOIDCClaims = [] } = details.prompt.details;
    return send(res, 200, consentPage(uid, clientId, missingOIDCScope, missingOIDCClaims));
  }
  if (req.method !== 'POST') return sendError(res, 405, 'method not allowed');
  if (action === 'login' && name === 'login') {
    const form = await readForm(req);
    const account = accounts.authenticate(form.get('login') ?? '', form.get('password') ?? '');
    if (!account) return send(res, 200, loginPage(uid, clientId, 'Wrong account or password.'));
    const result = { login: { accountId: account.sub } };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm' && name === 'consent') {
    const consent = await grantConsent(provider, details);
    return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
  }
  if (action === 'abort') {
    const result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  return sendError(res, 400, 'unexpected step');
}

const INTERACTION = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/;

function handler(provider, accounts) {
  const callback = provider.callback();
  return (req, res) => {
    const match = INTERACTION.exec(new URL(req.url, 'http://x').pathname);
    if (!match) return callback(req, res);
    return interaction(provider, accounts, req, res, match[1], match[2]).catch((error) => {
      console.error(`interaction ${match[1]}: ${error.name}: ${error.message}`);
      if (!res.headersSent) sendError(res, 400, error.name);
    });
  };
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

async function main() {
  const config = readConfig(process.argv[2]);
  const accounts = new Accounts(config.accounts);
  let route = (req, res) => send(res, 503, page('Starting', ''));
  const server = config.tls
    ? https.createServer(
      { cert: fs.readFileSync(config.tls.cert), key: fs.readFileSync(config.tls.key) },
      (req, res) => route(req, res),
    )
    : http.createServer((req, res) => route(req, res));
  const port = await listen(server);
  // The issuer names the port, which is known only now.
  const issuer = `${config.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const settings = providerConfiguration(config, accounts);
  const provider = new Provider(issuer, settings);
  route = handler(provider, accounts);
  const kids = settings.jwks.keys.map((key) => key.kid);
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
  const ready = { issuer, port, kids, signing_kid: kids[0], node: process.version };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
