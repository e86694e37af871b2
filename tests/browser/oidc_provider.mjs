// A certified OpenID provider (the npm package oidc-provider) for the sign-in test:
// one confidential client, PKCE required, its development login page (any login is
// that account's subject). Run by tests/browser/test_provider_signin.py.
import Provider from 'oidc-provider';

const { PORT, REDIRECT } = process.env;
const issuer = `http://127.0.0.1:${PORT}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'rollcall-pages',
    client_secret: 'a-client-secret-for-the-test-only',
    redirect_uris: [REDIRECT],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  cookies: { keys: ['a-cookie-key-for-the-test-only'] },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
});
const server = provider.listen(Number(PORT), '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`);
});
