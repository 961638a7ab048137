/**
 * Reads a request body up to a byte limit. The limit is checked against Content-Length first and again
 * while streaming (chunked bodies have no length), so an oversize body is never buffered whole.
 */
import type { IncomingMessage } from 'node:http';
import { AdminHttpError } from './http-error.js';

/** The API's bodies are tiny JSON objects; anything near this is a mistake or an attack. */
export const MAX_BODY_BYTES = 16 * 1024;

export function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const refuse = (): void => {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      // Discard the rest instead of destroying the request, so the 413 answer still reaches the client.
      req.resume();
      reject(tooLarge(limit));
    };
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) refuse();
      else chunks.push(chunk);
    };
    const onEnd = (): void => resolve(Buffer.concat(chunks, size));
    req.once('error', reject);

    const declared = Number(req.headers['content-length'] ?? '0');
    if (Number.isFinite(declared) && declared > limit) {
      refuse();
      return;
    }
    req.on('data', onData);
    req.once('end', onEnd);
  });
}

function tooLarge(limit: number): AdminHttpError {
  return new AdminHttpError(413, 'QG_ERR_ADMIN_BAD_REQUEST', `request body larger than ${limit} bytes`, {
    details: { parameter: 'body', limitBytes: limit },
    // The rest of the body is not read, so the connection is not reused.
    headers: { Connection: 'close' },
  });
}
