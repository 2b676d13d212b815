// The console's only way to the server: the public HTTP API, typed from /openapi.json
// (schema.d.ts is generated from web/openapi.json by `npm run types`).
import type { components } from './schema';

export type Schemas = components['schemas'];
export type ErrorDetail = Schemas['ErrorDetail'];

/** An answer that is not 2xx: the API's JSON error. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public detail: ErrorDetail,
  ) {
    super(detail.message);
  }
}

export class Api {
  constructor(private key: string) {}

  async get<T>(path: string): Promise<T> {
    return this.send<T>('GET', path);
  }

  /** A binary answer (a code's image). */
  async blob(path: string): Promise<Blob> {
    const response = await fetch(path, { headers: { authorization: `Bearer ${this.key}` } });
    if (!response.ok) {
      const value = await response.json().catch(() => undefined);
      throw new ApiError(response.status, value?.error ?? { code: 'http_error', message: `${response.status}` });
    }
    return response.blob();
  }

  /** A request with a JSON body, or with `body` as it is when its `contentType` is given. */
  async send<T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.key}` };
    if (body !== undefined) headers['content-type'] = contentType ?? 'application/json';
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : contentType ? (body as string) : JSON.stringify(body),
    });
    const text = await response.text();
    const value = text ? JSON.parse(text) : undefined;
    if (!response.ok) {
      const detail: ErrorDetail = value?.error ?? {
        code: 'http_error',
        message: `${response.status} ${response.statusText}`,
      };
      throw new ApiError(response.status, detail);
    }
    return value as T;
  }
}
