import { FormError, type FormpackManifest } from '@formation/interface';
import { ErrorBodySchema } from '@formation/interface/error-schema';
import type { FormpackDetail, ShipResultInfo } from '@formation/interface/web-api';
import type { ApiServer, Logger } from '@formation/service';
import { shipFormpack } from '@formation/state';
import { Type } from '@sinclair/typebox';
import type { WebContext } from '../context.ts';
import { FormpackDetailSchema, FormpackInfoSchema, ShipResultSchema } from '../schemas.ts';
import type { NodeApis } from '../upstream.ts';
import { formpackDetail, formpackList } from '../views.ts';

/** The developer's Formpacks: list, one, and ship one built on this node. */
export function registerFormpackRoutes(app: ApiServer, ctx: WebContext): void {
  const { apis, session, log } = ctx;

  app.get(
    '/api/formpacks',
    {
      schema: {
        summary: "The signed-in developer's Formpacks",
        response: { 200: Type.Array(FormpackInfoSchema), 401: ErrorBodySchema },
      },
    },
    async (req) => {
      const s = session(req);
      const [published, local] = await Promise.all([apis.publishedFormpacks(), localFormpacks(apis, log)]);
      return formpackList(local, published, s.address);
    },
  );

  app.get(
    '/api/formpacks/:id',
    {
      schema: {
        summary: 'One of your Formpacks: manifest, Formfile, size, measurement',
        params: Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{6,64}$' }) }),
        response: { 200: FormpackDetailSchema, 401: ErrorBodySchema, 404: ErrorBodySchema },
      },
    },
    async (req): Promise<FormpackDetail> => {
      const s = session(req);
      const id = req.params.id;
      const [published, instances] = await Promise.all([apis.publishedFormpacks(), apis.instances()]);
      const manifest = await manifestHere(apis, id);
      return formpackDetail(id, manifest, published, instances, s.address);
    },
  );

  app.post(
    '/api/formpacks/:id/ship',
    {
      schema: {
        summary: 'Ship one of your Formpacks built on this node: publish it and create (or update) its instance',
        params: Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{64}$' }) }),
        body: Type.Object(
          { replicas: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })), new: Type.Optional(Type.Boolean()) },
          { additionalProperties: false },
        ),
        response: { 200: ShipResultSchema, 401: ErrorBodySchema, 403: ErrorBodySchema, 404: ErrorBodySchema },
      },
    },
    async (req): Promise<ShipResultInfo> => {
      const { s, key } = ctx.manager(req);
      const manifest = await manifestHere(apis, req.params.id);
      if (!manifest) {
        throw new FormError('PACK_NOT_FOUND', `Cannot ship ${req.params.id.slice(0, 12)}: this node does not have it`, {
          hint: 'Build it here first (Formpacks → Build), or ship it from the machine that built it with `form pack ship`.',
        });
      }
      if (manifest.owner !== s.address) {
        throw new FormError('PACK_NOT_FOUND', `You have no Formpack ${req.params.id.slice(0, 12)}`, {
          hint: 'The Formpacks page lists yours.',
        });
      }
      const r = await shipFormpack(ctx.stateClient, key, manifest, {
        replicas: req.body.replicas,
        new: req.body.new,
      });
      log.info({ address: s.address, instance: r.id, formpack: manifest.id }, 'dashboard: ship');
      return r;
    },
  );
}

/** The manifest of a Formpack built on this node; undefined when this node does not have it. */
async function manifestHere(apis: NodeApis, id: string): Promise<FormpackManifest | undefined> {
  try {
    return await apis.manifest(id);
  } catch (err) {
    if ((err as FormError).status !== 404) throw err;
    return undefined;
  }
}

/** Formpacks built on this node; none (with a warning) when the pack API is down. */
async function localFormpacks(apis: NodeApis, log: Logger): Promise<FormpackManifest[]> {
  try {
    return await apis.localFormpacks();
  } catch (err) {
    log.warn({ err }, 'pack API unavailable: listing published Formpacks only');
    return [];
  }
}
