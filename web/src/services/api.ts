// Calls to the edge: the ID token as Bearer, JSON in and out, and every
// error (problem+json, RFC 9457) as an ApiError the page can branch on.

import { loadConfig } from '../config';
import type { components } from '../types/api';
import { auth } from './auth';

export type Problem = components['schemas']['Problem'];

/** `urn:credits-topup:problem:<kind>` → `<kind>`. */
export function problemKind(type: string): string {
  return type.startsWith('urn:credits-topup:problem:') ? type.slice('urn:credits-topup:problem:'.length) : type;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | null,
    /** Seconds to wait before retrying (429 and 503 say so). */
    readonly retryAfter: number | null,
  ) {
    super(problem ? `${problem.title}: ${problem.detail}` : `the server answered ${status}`);
    this.name = 'ApiError';
  }

  get kind(): string | null {
    return this.problem ? problemKind(this.problem.type) : null;
  }
}

/** The network failed before any answer. */
export class NetworkError extends Error {
  constructor(cause: unknown) {
    super('the server could not be reached', { cause });
    this.name = 'NetworkError';
  }
}

export interface RequestOptions {
  method?: 'GET' | 'POST';
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** A request to the edge with the user's ID token; the raw response. */
export async function authorizedFetch(path: string, options: RequestOptions = {}): Promise<Response> {
  const provider = await auth();
  const token = await provider.getIdToken();
  return send(path, options, { authorization: `Bearer ${token}` });
}

/** A request to the edge, as `headers` say; the raw response, or an ApiError / NetworkError. */
async function send(path: string, options: RequestOptions, given: Record<string, string>): Promise<Response> {
  const { apiBaseUrl } = await loadConfig();
  const headers: Record<string, string> = { ...given, ...options.headers };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(`${apiBaseUrl}${path}`, {
      method: options.method ?? 'GET',
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
    });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    throw new NetworkError(error);
  }
  if (!response.ok) throw await apiError(response);
  return response;
}

/** A JSON request to a public route of the edge (no token); the parsed answer. */
export async function publicRequest<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const response = await send(path, options, {});
  return (await response.json()) as T;
}

/** A JSON request to the edge; the parsed answer. */
export async function apiRequest<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const response = await authorizedFetch(path, options);
  return (await response.json()) as T;
}

async function apiError(response: Response): Promise<ApiError> {
  const retryAfter = Number(response.headers.get('retry-after'));
  let problem: Problem | null = null;
  if ((response.headers.get('content-type') ?? '').includes('json')) {
    try {
      problem = (await response.json()) as Problem;
    } catch {
      problem = null;
    }
  }
  return new ApiError(response.status, problem, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null);
}
