// A code's side panel: every parameter it was made with, what it carries (the exact path or
// scene WeChat got), its image, and its numbers, with the way into its analysis.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Api, Schemas } from './api/client';
import type { Key, Translate } from './i18n';
import { DEFAULT_METRICS, specQuery } from './spec';

type Listed = Schemas['ListedCode'];
const UTM = ['source', 'medium', 'campaign', 'content', 'term'] as const;

export function CodePanel({ api, project, code, t, formatDate, onClose }: {
  api: Api;
  project: string;
  code: Listed;
  t: Translate;
  formatDate: (ms: number) => string;
  onClose: () => void;
}) {
  const [image, setImage] = useState<string | null>(null);
  const title = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    title.current?.focus();
    const closeOnEscape = (event: KeyboardEvent) => event.key === 'Escape' && onClose();
    addEventListener('keydown', closeOnEscape);
    return () => removeEventListener('keydown', closeOnEscape);
  }, [code.id]);
  useEffect(() => {
    let url: string | null = null;
    setImage(null);
    api.blob(`/v1/projects/${encodeURIComponent(project)}/codes/${code.id}/image`).then(
      (blob) => setImage((url = URL.createObjectURL(blob))),
      () => setImage(null),
    );
    return () => url && URL.revokeObjectURL(url);
  }, [code.id]);
  const { encoding, image: options } = code;
  const colour = options.line_color ? `rgb(${options.line_color.r}, ${options.line_color.g}, ${options.line_color.b})` : t('panel.auto');
  const rows: [Key, string][] = [
    ['panel.id', code.id],
    ['codes.kind', code.kind],
    ['codes.page', code.page],
    ...UTM.map((field): [Key, string] => [`new.utm_${field}` as Key, code.utm[field] ?? '']),
    ['new.params', code.params.map(([k, v]) => `${k}=${v}`).join('&')],
    [encoding.scene != null ? 'panel.scene' : 'panel.path', encoding.scene ?? encoding.path ?? ''],
    [encoding.scene != null ? 'new.usedCharacters' : 'new.usedBytes', ''],
    ['panel.byReference', t(encoding.by_reference ? 'panel.yes' : 'panel.no')],
    ['new.width', String(options.width ?? 430)],
    ['new.colour', colour],
    ['new.transparent', t(options.is_hyaline ? 'panel.yes' : 'panel.no')],
    ['panel.image', `${code.content_type}, ${code.image_bytes.toLocaleString()} B`],
    ['codes.created', formatDate(code.created_at_ms)],
    ['panel.updated', formatDate(code.updated_at_ms)],
  ];
  const analysis = specQuery({ metrics: DEFAULT_METRICS, group: null, model: 'first_touch', lookback: 30, saved: null, by: ['scene'], days: 30, from: null, to: null, preset: null, filters: { code_id: { op: 'equals', value: code.id } }, compare: false });
  return (
    <aside class="panel card" aria-labelledby="panel-title">
      <div class="panel-head">
        <h2 id="panel-title" tabIndex={-1} ref={title}>
          {code.name}
        </h2>
        <button type="button" onClick={onClose}>
          {t('new.cancel')}
        </button>
      </div>
      <h3>{t('panel.past7')}</h3>
      <dl class="figures">
        {(['new_users', 'users', 'launches'] as const).map((metric) => (
          <div key={metric}>
            <dt>{t(`metric.${metric}`)}</dt>
            <dd class="number">{code.past_7_days[metric].toLocaleString()}</dd>
          </div>
        ))}
      </dl>
      <p>
        <a href={`#/analysis?${analysis}`}>{t('panel.analyse')}</a>
      </p>
      <h3>{t('panel.parameters')}</h3>
      <dl class="parameters">
        {rows.map(([label, value]) => (
          <div key={label}>
            <dt>{label === 'new.usedBytes' || label === 'new.usedCharacters' ? t('panel.used') : t(label)}</dt>
            <dd>{label === 'new.usedBytes' || label === 'new.usedCharacters' ? t(label, { used: encoding.used, limit: encoding.limit }) : value || '—'}</dd>
          </div>
        ))}
      </dl>
      <div class="panel-image">
        {image ? <img src={image} alt={t('new.image', { name: code.name })} width={200} height={200} /> : <div class="placeholder" />}
      </div>
    </aside>
  );
}
