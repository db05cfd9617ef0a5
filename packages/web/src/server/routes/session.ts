import { type Delegation, NonceCache } from '@formation/identity';
import { FormError } from '@formation/interface';
import { ErrorBodySchema } from '@formation/interface/error-schema';
import type { LoginTokenResponse, SessionInfo } from '@formation/interface/web-api';
import { type ApiServer, requireSigner } from '@formation/service';
import { Type } from '@sinclair/typebox';
import { SESSION_COOKIE, type WebContext } from '../context.ts';
import { OkSchema, SessionInfoSchema } from '../schemas.ts';
import { readCookie } from '../sessions.ts';

/** Sign-in: `form web login` mints a one-time link (and may attach a delegation); the browser trades it for a cookie. */
export function registerSessionRoutes(app: ApiServer, ctx: WebContext): void {
  const { sessions, log } = ctx;
  const loginNonces = new NonceCache();
  app.post(
    '/api/login/token',
    {
      preHandler: requireSigner(loginNonces),
      schema: {
        summary: 'Mint a one-time login link for the signing developer (used by `form web login`)',
        security: [{ formSignature: [] }],
        response: {
          200: Type.Object({
            token: Type.String(),
            expiresAt: Type.Integer(),
            path: Type.String(),
            delegate: Type.String(),
            sessionExpiresAt: Type.Integer(),
          }),
          401: ErrorBodySchema,
        },
      },
    },
    async (req): Promise<LoginTokenResponse> => {
      const { address, publicKey } = req.signer!;
      const t = sessions.mintToken(address, publicKey);
      log.info({ address }, 'login link issued');
      return { ...t, path: `/login#token=${t.token}` };
    },
  );

  app.post(
    '/api/login/delegation',
    {
      preHandler: requireSigner(loginNonces),
      schema: {
        summary: "Attach the developer's signed delegation to a login token (lets that session manage for them)",
        security: [{ formSignature: [] }],
        body: Type.Object(
          {
            token: Type.String({ minLength: 10, maxLength: 200 }),
            delegation: Type.Object({
              owner: Type.String(),
              delegate: Type.String(),
              scope: Type.Literal('manage'),
              expiresAt: Type.Integer(),
              sig: Type.String(),
            }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ expiresAt: Type.Integer() }), 401: ErrorBodySchema, 403: ErrorBodySchema },
      },
    },
    async (req) => {
      const r = sessions.delegate(req.body.token, req.signer!.publicKey, req.body.delegation as Delegation);
      log.info({ address: req.signer!.address, expiresAt: r.expiresAt }, 'login link may manage (delegation)');
      return r;
    },
  );

  app.post(
    '/api/session',
    {
      schema: {
        summary: 'Trade a one-time login token for a session cookie',
        body: Type.Object({ token: Type.String({ minLength: 10, maxLength: 200 }) }, { additionalProperties: false }),
        response: {
          200: SessionInfoSchema,
          401: ErrorBodySchema,
        },
      },
    },
    async (req, reply): Promise<SessionInfo> => {
      const r = sessions.redeem(req.body.token);
      if (!r) {
        throw new FormError('AUTH_EXPIRED', 'This login link was already used or has expired', {
          hint: 'Run `form web login` again and open the new link.',
        });
      }
      const maxAge = Math.floor((r.session.expiresAt - Date.now()) / 1000);
      reply.header(
        'set-cookie',
        `${SESSION_COOKIE}=${r.id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAge}${req.protocol === 'https' ? '; Secure' : ''}`,
      );
      log.info({ address: r.session.address, canManage: !!r.session.key }, 'dashboard session opened');
      return { address: r.session.address, expiresAt: r.session.expiresAt, canManage: !!r.session.key };
    },
  );

  app.get(
    '/api/session',
    { schema: { summary: 'Who is signed in', response: { 200: SessionInfoSchema, 401: ErrorBodySchema } } },
    async (req): Promise<SessionInfo> => {
      const s = ctx.session(req);
      return { address: s.address, expiresAt: s.expiresAt, canManage: !!s.key };
    },
  );

  app.delete('/api/session', { schema: { summary: 'Sign out', response: { 200: OkSchema } } }, async (req, reply) => {
    sessions.end(readCookie(req.headers.cookie, SESSION_COOKIE));
    reply.header('set-cookie', `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
    return { ok: true };
  });
}
