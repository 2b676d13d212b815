// The form that makes a code: a live counter of what the code will carry (the plugin's preview on
// every keystroke: bytes of 128 for A and C, characters of 32 for B, the exact overshoot), then
// "Generate" and the image with a download link.
import { useEffect, useRef, useState } from 'preact/hooks';
import { Api, ApiError, type Schemas } from './api/client';
import type { Key, Translate } from './i18n';

type NewCode = Schemas['NewCode'];
type Kind = Schemas['CodeKind'];
const UTM = ['utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term'] as const;

type Counter =
  | { state: 'fits'; encoding: Schemas['Encoding'] }
  | { state: 'error'; detail: Schemas['ErrorDetail'] };

export function NewCodeForm({ api, project, t, onMade, onClose }: { api: Api; project: string; t: Translate; onMade: () => void; onClose: () => void }) {
  const [form, setForm] = useState<NewCode>({ name: '', kind: 'A', page: 'pages/index/index' });
  const [counter, setCounter] = useState<Counter | null>(null);
  const [made, setMade] = useState<{ code: Schemas['Code']; image: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const [paramsText, setParamsText] = useState('');
  const setParams = (text: string) => {
    setParamsText(text);
    setForm({ ...form, params: parseParams(text) });
  };
  const asked = useRef(0);
  const base = `/v1/projects/${encodeURIComponent(project)}/codes`;

  // Every change asks for a preview; an answer to an older request is dropped.
  useEffect(() => {
    const request = ++asked.current;
    api
      .send<Schemas['CodePreview']>('POST', `${base}:preview`, withoutEmpty({ ...form, name: form.name || '-' }))
      .then(
        (preview) => request === asked.current && setCounter({ state: 'fits', encoding: preview.encoding }),
        (e) => request === asked.current && e instanceof ApiError && setCounter({ state: 'error', detail: e.detail }),
      );
  }, [form]);

  const set = (field: keyof NewCode) => (event: Event) =>
    setForm({ ...form, [field]: (event.currentTarget as HTMLInputElement).value });

  const generate = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    try {
      const code = await api.send<Schemas['Code']>('POST', base, withoutEmpty(form));
      const image = URL.createObjectURL(await api.blob(`${base}/${code.id}/image`));
      setMade({ code, image });
      onMade();
    } catch (e) {
      if (e instanceof ApiError) setCounter({ state: 'error', detail: e.detail });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card new-code" onSubmit={generate} aria-labelledby="new-code-title">
      <h2 id="new-code-title">{t('new.title')}</h2>
      <label for="code-name">{t('new.name')}</label>
      <input id="code-name" value={form.name} onInput={set('name')} required maxLength={100} />
      <fieldset>
        <legend>{t('new.kind')}</legend>
        {(['A', 'B', 'C'] as Kind[]).map((kind) => (
          <label class="choice" key={kind}>
            <input type="radio" name="kind" value={kind} checked={form.kind === kind} onChange={() => setForm({ ...form, kind })} />
            {t(`new.kind${kind}` as Key)}
          </label>
        ))}
      </fieldset>
      <label for="code-page">{t('new.page')}</label>
      <input id="code-page" value={form.page} onInput={set('page')} required aria-describedby="code-page-hint" />
      <p class="hint" id="code-page-hint">{t('new.pageHint')}</p>
      {UTM.map((field) => (
        <>
          <label for={`code-${field}`}>{t(`new.${field}` as Key)}</label>
          <input id={`code-${field}`} value={(form[field] as string | undefined) ?? ''} onInput={set(field)} />
        </>
      ))}
      <details class="more">
        <summary>{t('new.more')}</summary>
        <div class="fields">
          <label for="code-params">{t('new.params')}</label>
          <input id="code-params" value={paramsText} onInput={(e) => setParams(e.currentTarget.value)} aria-describedby="code-params-hint" />
          <p class="hint" id="code-params-hint">{t('new.paramsHint')}</p>
          <label for="code-width">{t('new.width')}</label>
          <input id="code-width" type="number" min={280} max={1280} step={1} value={form.width ?? ''} placeholder="430" onInput={(e) => setForm({ ...form, width: e.currentTarget.value ? Number(e.currentTarget.value) : null })} />
          <label class="choice">
            <input type="checkbox" checked={form.line_color != null} onChange={(e) => setForm({ ...form, line_color: e.currentTarget.checked ? [0, 0, 0] : null })} />
            {t('new.ownColour')}
          </label>
          {form.line_color != null && (
            <>
              <label for="code-colour">{t('new.colour')}</label>
              <input id="code-colour" type="color" value={hexOf(form.line_color)} onInput={(e) => setForm({ ...form, line_color: rgbOf(e.currentTarget.value) })} />
            </>
          )}
          <label class="choice">
            <input type="checkbox" checked={form.is_hyaline ?? false} onChange={(e) => setForm({ ...form, is_hyaline: e.currentTarget.checked })} />
            {t('new.transparent')}
          </label>
        </div>
      </details>
      <p class="counter" role="status" aria-live="polite">
        {counter && <CounterText counter={counter} t={t} />}
      </p>
      <div class="actions">
        <button type="submit" disabled={busy || counter?.state === 'error'}>
          {t('new.generate')}
        </button>
        <button type="button" onClick={onClose}>
          {t('new.cancel')}
        </button>
      </div>
      {made && (
        <div class="made">
          <p>{t('new.made', { id: made.code.id })}</p>
          <img src={made.image} alt={t('new.image', { name: made.code.name })} width={200} height={200} />
          <a href={made.image} download={`${made.code.id}.png`}>
            {t('new.download')}
          </a>
        </div>
      )}
    </form>
  );
}

function CounterText({ counter, t }: { counter: Counter; t: Translate }) {
  if (counter.state === 'error') {
    const over = counter.detail.over_limit;
    if (over) {
      const unit = over.unit === 'characters' ? t('new.characters') : t('new.bytes');
      return <span class="error">{t('new.over', { field: counter.detail.field ?? '', actual: over.actual, unit, over: over.over, limit: over.limit })}</span>;
    }
    return <span class="error">{counter.detail.message}</span>;
  }
  const { encoding } = counter;
  const used = encoding.scene != null ? 'new.usedCharacters' : 'new.usedBytes';
  return (
    <>
      {t(used, { used: encoding.used, limit: encoding.limit })}
      {encoding.by_reference && encoding.inline_bytes != null && <span class="hint"> {t('new.byReference', { inline: encoding.inline_bytes })}</span>}
    </>
  );
}

/** The request without empty optional fields (an empty UTM value is no value). */
function withoutEmpty(form: NewCode): NewCode {
  const request: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(form)) {
    const empty = value === '' || value == null || (Array.isArray(value) && value.length === 0);
    if (!empty) request[key] = value;
  }
  return request as NewCode;
}

/** `key=value&key=value`, as typed (the plugin percent-encodes what the code carries). */
function parseParams(text: string): [string, string][] {
  return text
    .split('&')
    .filter((pair) => pair !== '')
    .map((pair) => {
      const at = pair.indexOf('=');
      return at < 0 ? [pair, ''] : [pair.slice(0, at), pair.slice(at + 1)];
    });
}

const hexOf = (rgb: number[]) => `#${rgb.map((c) => c.toString(16).padStart(2, '0')).join('')}`;
const rgbOf = (hex: string) => [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
