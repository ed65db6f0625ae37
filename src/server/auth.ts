import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import { Agent, fetch as undiciFetch } from 'undici'
import { createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose'
import { z } from 'zod'
import type { AccessPolicy } from './access-policy.js'
import { HttpError } from './http.js'
import type { RoutePolicy } from './route-policy.js'

/**
 * Authentication, in llama-stack's shape (`server.auth.provider_config`, by `type`):
 * `oauth2_token` (JWTs against a JWKS, or RFC 7662 introspection), `custom` (an endpoint that
 * answers the principal), `upstream_header` (a gateway in front says who it is), and troupe's
 * own `api_keys` (keys kept as sha256 hashes). Every request to a route that is not public
 * carries credentials or is refused with 401 and `WWW-Authenticate`, before any handler runs,
 * so no provider is ever reached unauthenticated. A verifier that cannot be reached (the JWKS,
 * the introspection or custom endpoint) is 503 `auth_unavailable`: retry, not re-login.
 */

/** Who is asking, and the attributes access rules look at (roles, teams, projects, namespaces). */
export interface Principal {
  readonly principal: string
  readonly attributes: Readonly<Record<string, readonly string[]>>
}

/** llama-stack's default claims → attributes mapping. */
const DEFAULT_CLAIMS_MAPPING = { sub: 'roles', username: 'roles', groups: 'teams', team: 'teams', project: 'projects', tenant: 'namespaces', namespace: 'namespaces' }
/** Asymmetric algorithms only: `none` and HMAC (an HS256 token signed with the public key) are refused. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']
/** How long a verifier endpoint (custom, introspection) gets to answer. */
const VERIFIER_TIMEOUT_MS = 10_000
/** An unknown `kid` refetches the JWKS at most this often. */
const JWKS_COOLDOWN_MS = 30_000
/** Verified tokens remembered (by their sha256), so that a client's next request skips the signature check. */
const VERIFIED_TOKENS = 10_000

const claimsMapping = z.record(z.string(), z.string().min(1, 'an attribute name cannot be empty'))

export const authProviderSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('oauth2_token'),
      audience: z.string().min(1).default('llama-stack'),
      issuer: z.string().min(1).optional(),
      verify_tls: z.boolean().default(true),
      tls_cafile: z.string().min(1).optional(),
      claims_mapping: claimsMapping.default(DEFAULT_CLAIMS_MAPPING),
      jwks: z.object({ uri: z.url(), token: z.string().min(1).optional(), key_recheck_period: z.number().int().positive().default(3600) }).optional(),
      introspection: z.object({ url: z.url(), client_id: z.string().min(1), client_secret: z.string().min(1), send_secret_in_body: z.boolean().default(false) }).optional(),
    })
    .refine(c => (c.jwks === undefined) !== (c.introspection === undefined), { message: 'set one of jwks or introspection', path: ['jwks'] }),
  z.object({ type: z.literal('custom'), endpoint: z.url() }),
  z.object({ type: z.literal('upstream_header'), principal_header: z.string().min(1), attributes_header: z.string().min(1).optional() }),
  z.object({
    type: z.literal('api_keys'),
    keys: z
      .array(
        z.object({
          hash: z.string().regex(/^sha256:[0-9a-f]{64}$/, "must be 'sha256:' and the key's sha256 in hex (node dist/main.js keys new prints one)"),
          principal: z.string().min(1),
          attributes: z.record(z.string(), z.array(z.string())).default({}),
        }),
      )
      .min(1),
  }),
])
export type AuthProviderConfig = z.infer<typeof authProviderSchema>

/** server.auth, checked and compiled: how callers are authenticated, and the rules their requests and resources are held to. */
export interface AuthSettings {
  /** undefined: route rules alone, without authentication (llama-stack allows it); every caller is anonymous. */
  readonly provider: AuthProviderConfig | undefined
  /** route_policy; undefined when it has no rules, and every route is allowed. */
  readonly routePolicy: RoutePolicy | undefined
  /** access_policy; llama-stack's default when it has no rules. */
  readonly accessPolicy: AccessPolicy
}

/**
 * server.auth as one request is held to it: its authenticator and both policies, taken whole
 * when the request starts (ServedRequest.auth), so that a reload while it awaits cannot mix the
 * old authenticator with the new rules.
 */
export interface RequestAuth {
  /** undefined: no provider_config; every caller is anonymous. */
  readonly authenticator: Authenticator | undefined
  readonly routePolicy: RoutePolicy | undefined
  readonly accessPolicy: AccessPolicy
}

/** Routes served without credentials, as llama-stack serves health and version (`/health`: the workflows protocol's). */
const PUBLIC_ROUTES = new Set(['/v1/health', '/v1/version', '/metrics', '/health'])
export const isPublicRoute = (path: string): boolean => PUBLIC_ROUTES.has(path)

export interface Authenticator {
  /** The caller of `req`, or a 401 (no or bad credentials) / 503 (the verifier is unreachable) HttpError. */
  authenticate(req: IncomingMessage, url: { pathname: string; query: URLSearchParams }): Promise<Principal>
}

export function createAuthenticator(config: AuthProviderConfig): Authenticator {
  switch (config.type) {
    case 'oauth2_token':
      return config.jwks !== undefined ? jwtAuthenticator(config, config.jwks) : introspectionAuthenticator(config, config.introspection!)
    case 'custom':
      return customAuthenticator(config.endpoint)
    case 'upstream_header':
      return upstreamHeaderAuthenticator(config.principal_header, config.attributes_header)
    case 'api_keys':
      return apiKeyAuthenticator(config.keys)
  }
}

/** A new API key and the hash to put in `keys[].hash`. */
export function newApiKey(): { key: string; hash: string } {
  const key = `tr-${randomBytes(32).toString('base64url')}`
  return { key, hash: hashOfKey(key) }
}

export const hashOfKey = (key: string): string => `sha256:${createHash('sha256').update(key).digest('hex')}`

function unauthorized(message: string, error?: 'invalid_token'): HttpError {
  return new HttpError(401, 'unauthorized', message, null, { 'www-authenticate': `Bearer realm="troupe"${error === undefined ? '' : `, error="${error}"`}` })
}

function unavailable(what: string, cause: unknown): HttpError {
  const why = cause instanceof Error ? cause.message : String(cause)
  return new HttpError(503, 'auth_unavailable', `authentication could not be checked: ${what} did not answer (${why})`, null, { 'retry-after': '1' })
}

/** The bearer token of a request, or a 401 that says what is missing. */
function bearerToken(req: IncomingMessage): string {
  const header = req.headers.authorization
  if (header === undefined) throw unauthorized('authentication required: send Authorization: Bearer <token>')
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
  if (match === null) throw unauthorized('the Authorization header must be Bearer <token>', 'invalid_token')
  return match[1]!
}

/** Attributes from claims by a mapping; a dotted claim name reaches into nested claims. */
export function attributesFromClaims(claims: Record<string, unknown>, mapping: Readonly<Record<string, string>>): Record<string, string[]> {
  const attributes: Record<string, string[]> = {}
  for (const [claimName, attribute] of Object.entries(mapping)) {
    let claim: unknown = claims
    for (const part of claimName.split('.')) claim = typeof claim === 'object' && claim !== null ? (claim as Record<string, unknown>)[part] : undefined
    if (claim === undefined) claim = claims[claimName]
    const values = Array.isArray(claim) ? claim.map(String) : typeof claim === 'string' ? claim.split(/\s+/).filter(Boolean) : undefined
    if (values !== undefined) attributes[attribute] = [...(attributes[attribute] ?? []), ...values]
  }
  return attributes
}

/** fetch with the TLS settings of a verifier: verification off, or a CA bundle. */
function tlsFetch(verifyTls: boolean, caFile: string | undefined): typeof undiciFetch | undefined {
  if (verifyTls && caFile === undefined) return undefined
  const dispatcher = new Agent({ connect: { rejectUnauthorized: verifyTls, ...(caFile === undefined ? {} : { ca: readFileSync(caFile) }) } })
  return ((input, init) => undiciFetch(input, { ...init, dispatcher })) as typeof undiciFetch
}

type OAuth2Config = Extract<AuthProviderConfig, { type: 'oauth2_token' }>

/**
 * JWTs verified against the JWKS (jose): keys are cached for `key_recheck_period`, and a token
 * with an unknown `kid` refetches them, at most once per JWKS_COOLDOWN_MS, never per request.
 *
 * A token once verified is remembered by its sha256 (never the token itself) until it expires,
 * and no longer than `key_recheck_period`: the keys it was verified with are cached that long
 * anyway, so remembering it opens no window the JWKS cache does not. A signature check is most
 * of what authentication costs a request; a client sends the same token many times.
 */
function jwtAuthenticator(config: OAuth2Config, jwks: NonNullable<OAuth2Config['jwks']>): Authenticator {
  const verified = new Map<string, { readonly principal: Principal; readonly until: number }>()
  const fetcher = tlsFetch(config.verify_tls, config.tls_cafile)
  const keys = createRemoteJWKSet(new URL(jwks.uri), {
    cacheMaxAge: jwks.key_recheck_period * 1000,
    cooldownDuration: JWKS_COOLDOWN_MS,
    timeoutDuration: VERIFIER_TIMEOUT_MS,
    ...(jwks.token === undefined ? {} : { headers: { authorization: `Bearer ${jwks.token}` } }),
    ...(fetcher === undefined ? {} : { [customFetch]: fetcher as unknown as typeof fetch }),
  })
  return {
    async authenticate(req) {
      const token = bearerToken(req)
      const digest = createHash('sha256').update(token).digest('base64')
      const known = verified.get(digest)
      if (known !== undefined && Date.now() < known.until) return known.principal
      if (known !== undefined) verified.delete(digest)
      let payload: JWTPayload
      try {
        ;({ payload } = await jwtVerify(token, keys, { audience: config.audience, algorithms: ALGORITHMS, ...(config.issuer === undefined ? {} : { issuer: config.issuer }) }))
      } catch (error) {
        if (error instanceof joseErrors.JWKSTimeout || (error instanceof joseErrors.JOSEError && error.code === 'ERR_JOSE_GENERIC') || !(error instanceof joseErrors.JOSEError)) {
          throw unavailable(`the JWKS at ${new URL(jwks.uri).origin}`, error)
        }
        throw unauthorized(`invalid token: ${tokenProblem(error)}`, 'invalid_token')
      }
      if (typeof payload.sub !== 'string' || payload.sub === '') throw unauthorized('invalid token: it names no subject (sub)', 'invalid_token')
      const principal: Principal = { principal: payload.sub, attributes: attributesFromClaims(payload, config.claims_mapping) }
      const until = Math.min(payload.exp === undefined ? Infinity : payload.exp * 1000, Date.now() + jwks.key_recheck_period * 1000)
      // Insertion order is age: past the bound, the oldest goes.
      if (verified.size >= VERIFIED_TOKENS) verified.delete(verified.keys().next().value!)
      verified.set(digest, { principal, until })
      return principal
    },
  }
}

/** What is wrong with a token, in words that say what to fix and never echo it. */
function tokenProblem(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'it has expired'
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `its ${error.claim} claim is not accepted (${error.reason})`
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return `its algorithm is not allowed (use one of ${ALGORITHMS.join(', ')})`
  if (error instanceof joseErrors.JWKSNoMatchingKey) return 'no key of the JWKS matches its kid'
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'its signature does not verify'
  if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid) return 'it is not a well-formed signed JWT'
  return error instanceof Error ? error.message : String(error)
}

/** RFC 7662: the token posted to the introspection endpoint with the client's credentials. */
function introspectionAuthenticator(config: OAuth2Config, introspection: NonNullable<OAuth2Config['introspection']>): Authenticator {
  const fetcher = tlsFetch(config.verify_tls, config.tls_cafile) ?? undiciFetch
  const basic = Buffer.from(`${encodeURIComponent(introspection.client_id)}:${encodeURIComponent(introspection.client_secret)}`).toString('base64')
  return {
    async authenticate(req) {
      const token = bearerToken(req)
      const form = new URLSearchParams({ token })
      if (introspection.send_secret_in_body) {
        form.set('client_id', introspection.client_id)
        form.set('client_secret', introspection.client_secret)
      }
      let claims: Record<string, unknown>
      try {
        const response = await fetcher(introspection.url, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...(introspection.send_secret_in_body ? {} : { authorization: `Basic ${basic}` }) },
          body: form.toString(),
          signal: AbortSignal.timeout(VERIFIER_TIMEOUT_MS),
        })
        if (!response.ok) throw new Error(`HTTP ${response.status}`)
        claims = (await response.json()) as Record<string, unknown>
      } catch (error) {
        throw unavailable(`the introspection endpoint at ${new URL(introspection.url).origin}`, error)
      }
      if (claims['active'] !== true) throw unauthorized('invalid token: the introspection endpoint says it is not active', 'invalid_token')
      const aud = claims['aud']
      if (aud !== undefined && !(Array.isArray(aud) ? aud.includes(config.audience) : aud === config.audience)) throw unauthorized('invalid token: its aud claim is not accepted', 'invalid_token')
      if (config.issuer !== undefined && claims['iss'] !== undefined && claims['iss'] !== config.issuer) throw unauthorized('invalid token: its iss claim is not accepted', 'invalid_token')
      const principal = typeof claims['sub'] === 'string' ? claims['sub'] : typeof claims['username'] === 'string' ? claims['username'] : undefined
      if (principal === undefined) throw unauthorized('invalid token: it names no subject', 'invalid_token')
      return { principal, attributes: attributesFromClaims(claims, config.claims_mapping) }
    },
  }
}

/** The answer a custom endpoint gives: the principal, and attributes for access rules. */
const customAnswer = z.object({ principal: z.string().min(1), attributes: z.record(z.string(), z.array(z.string())).nullish(), message: z.string().nullish() })

/**
 * llama-stack's custom provider: the token, with the request's path, headers (without
 * Authorization) and query, posted to the endpoint; a 200 with a principal admits, anything
 * else refuses with the endpoint's message.
 */
function customAuthenticator(endpoint: string): Authenticator {
  return {
    async authenticate(req, url) {
      const token = bearerToken(req)
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([name, value]) => name !== 'authorization' && typeof value === 'string')) as Record<string, string>
      const params: Record<string, string[]> = {}
      for (const [name, value] of url.query) params[name] = [...(params[name] ?? []), value]
      let response: Awaited<ReturnType<typeof undiciFetch>>
      try {
        response = await undiciFetch(endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ api_key: token, request: { path: url.pathname, headers, params } }),
          signal: AbortSignal.timeout(VERIFIER_TIMEOUT_MS),
        })
      } catch (error) {
        throw unavailable(`the custom authentication endpoint at ${new URL(endpoint).origin}`, error)
      }
      const text = await response.text().catch(() => '')
      if (response.status >= 500) throw unavailable(`the custom authentication endpoint at ${new URL(endpoint).origin}`, new Error(`HTTP ${response.status}`))
      const parsed = response.ok ? customAnswer.safeParse(safeJson(text)) : undefined
      if (parsed?.success !== true) {
        const message = (safeJson(text) as { message?: unknown } | undefined)?.message
        throw unauthorized(`the token was refused${typeof message === 'string' ? `: ${message}` : ''}`, 'invalid_token')
      }
      return { principal: parsed.data.principal, attributes: parsed.data.attributes ?? {} }
    },
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** A gateway in front authenticated the caller and says who it is; troupe trusts it, so only such a gateway may reach troupe. */
function upstreamHeaderAuthenticator(principalHeader: string, attributesHeader: string | undefined): Authenticator {
  const principalName = principalHeader.toLowerCase()
  const attributesName = attributesHeader?.toLowerCase()
  return {
    async authenticate(req) {
      const principal = req.headers[principalName]
      if (typeof principal !== 'string' || principal === '') throw unauthorized(`authentication required: the gateway in front must set the ${principalHeader} header`)
      if (attributesName === undefined) return { principal, attributes: {} }
      const raw = req.headers[attributesName]
      if (typeof raw !== 'string' || raw === '') return { principal, attributes: {} }
      const parsed = safeJson(raw)
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw unauthorized(`the ${attributesHeader} header must be a JSON object of attributes`)
      const attributes = Object.fromEntries(Object.entries(parsed).map(([name, value]) => [name, Array.isArray(value) ? value.map(String) : [String(value)]]))
      return { principal, attributes }
    },
  }
}

/** troupe's own keys: the token's sha256 compared in constant time with each configured hash. */
function apiKeyAuthenticator(keys: Extract<AuthProviderConfig, { type: 'api_keys' }>['keys']): Authenticator {
  const known = keys.map(key => ({ digest: Buffer.from(key.hash.slice('sha256:'.length), 'hex'), principal: { principal: key.principal, attributes: key.attributes } }))
  return {
    async authenticate(req) {
      const digest = createHash('sha256').update(bearerToken(req)).digest()
      let found: Principal | undefined
      // Every key is compared, so the time taken says nothing about which one came close.
      for (const key of known) if (timingSafeEqual(key.digest, digest)) found = key.principal
      if (found === undefined) throw unauthorized('invalid API key', 'invalid_token')
      return found
    },
  }
}
