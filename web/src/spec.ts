// What an analysis is, as its URL holds it (#/analysis?by=…&days=…|from=…&to=…&f.<dim>=…).
// Dimensions and metrics are data: a new one is a line here (and its words in i18n.ts).

export const DIMENSIONS = ['utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term', 'code', 'code_kind', 'scene', 'path'] as const;
export const METRICS = ['new_users', 'users', 'launches'] as const;

/** What the URL holds. */
export type Spec = { by: string[]; days: number | null; from: string | null; to: string | null; filters: Record<string, string> };

export function parseSpec(query: string): Spec {
  const params = new URLSearchParams(query);
  const by = (params.get('by') ?? 'utm_source').split(',').filter((d) => (DIMENSIONS as readonly string[]).includes(d));
  const filters: Record<string, string> = {};
  for (const [key, value] of params) if (key.startsWith('f.')) filters[key.slice(2)] = value;
  const from = params.get('from');
  const to = params.get('to');
  const days = from && to ? null : Number(params.get('days') ?? 7) || 7;
  return { by: by.length ? by : ['utm_source'], days, from, to, filters };
}

export function specQuery(spec: Spec): string {
  const params = new URLSearchParams();
  params.set('by', spec.by.join(','));
  if (spec.days != null) params.set('days', String(spec.days));
  else if (spec.from && spec.to) {
    params.set('from', spec.from);
    params.set('to', spec.to);
  }
  for (const [key, value] of Object.entries(spec.filters)) params.set(`f.${key}`, value);
  return params.toString();
}
