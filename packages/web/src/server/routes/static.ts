import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';
import { FormError } from '@formation/interface';
import type { ApiServer } from '@formation/service';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { WebContext } from '../context.ts';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

/** The front end: files from the build, and index.html for the app's own routes. Register last. */
export function registerStaticRoutes(app: ApiServer, ctx: WebContext): void {
  const { staticDir } = ctx;
  const sendStatic = async (req: FastifyRequest, reply: FastifyReply) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname.startsWith('/api/')) {
      throw new FormError('NOT_FOUND', `No route ${req.method} ${url.pathname}`);
    }
    const rel = normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.(\/|\\|$))+/, '');
    let file = join(staticDir, rel);
    if (!file.startsWith(staticDir + sep) || !existsSync(file) || !statSync(file).isFile()) {
      file = join(staticDir, 'index.html');
    }
    if (!existsSync(file)) {
      return reply
        .status(503)
        .type('text/plain; charset=utf-8')
        .send('The dashboard front end is not built. Run: npm run build -w @formation/web\n');
    }
    const type = MIME[extname(file)] ?? 'application/octet-stream';
    if (file.includes(`${sep}assets${sep}`)) reply.header('cache-control', 'public, max-age=31536000, immutable');
    return reply.type(type).send(readFileSync(file));
  };
  app.get('/', { schema: { hide: true } }, sendStatic);
  app.get('/*', { schema: { hide: true } }, sendStatic);
}
