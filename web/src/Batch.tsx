// Batch creation: a CSV file (a template to start from), sent as it is to `codes:batch`; the
// answer's rows shown one by one, the refused ones with their line and reason.
import { useState } from 'preact/hooks';
import { ApiError, type Api, type Schemas } from './api/client';
import type { Translate } from './i18n';
import { saveBlob } from './save';

const HEADER = 'name,kind,page,utm_source,utm_medium,utm_campaign,utm_content,utm_term,params,width';

export function BatchForm({ api, project, t, onMade, onClose }: { api: Api; project: string; t: Translate; onMade: () => void; onClose: () => void }) {
  const [file, setFile] = useState<File | null>(null);
  const [answer, setAnswer] = useState<Schemas['BatchAnswer'] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const template = () =>
    // The byte-order mark lets Excel open the Chinese names as UTF-8.
    saveBlob(new Blob([`\ufeff${HEADER}\n${t('batch.templateRows')}\n`], { type: 'text/csv' }), 'promolens-codes.csv');
  const submit = async (event: Event) => {
    event.preventDefault();
    if (!file) return;
    setBusy(true);
    setError(null);
    try {
      const made = await api.send<Schemas['BatchAnswer']>('POST', `/v1/projects/${encodeURIComponent(project)}/codes:batch`, await file.text(), 'text/csv');
      setAnswer(made);
      if (made.created > 0) onMade();
    } catch (e) {
      setError(e instanceof ApiError ? describe(e.detail) : String(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card batch" onSubmit={submit} aria-labelledby="batch-title">
      <h2 id="batch-title">{t('batch.title')}</h2>
      <p class="hint">{t('batch.what')}</p>
      <div>
        <button type="button" onClick={template}>
          {t('batch.template')}
        </button>
      </div>
      <label for="batch-file">{t('batch.file')}</label>
      <input id="batch-file" type="file" accept=".csv,text/csv" required onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="actions">
        <button type="submit" disabled={busy || !file}>
          {t('batch.submit')}
        </button>
        <button type="button" onClick={onClose}>
          {t('new.cancel')}
        </button>
      </div>
      {answer && (
        <>
          <p role="status">{t('batch.result', { created: answer.created, failed: answer.failed })}</p>
          <div class="scroll">
            <table>
              <thead>
                <tr>
                  <th scope="col" class="number">{t('batch.line')}</th>
                  <th scope="col">{t('codes.name')}</th>
                  <th scope="col">{t('batch.outcome')}</th>
                </tr>
              </thead>
              <tbody>
                {answer.rows.map((row) => (
                  <tr key={row.line}>
                    <td class="number">{row.line}</td>
                    <td>{row.name}</td>
                    <td class={row.error ? 'error' : ''}>{row.code ? t('batch.made', { id: row.code.id }) : row.error ? describe(row.error) : ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </form>
  );
}

/** An error as a person reads it: the field at fault, then what is wrong with it. */
function describe(detail: Schemas['ErrorDetail']): string {
  return detail.field && !detail.message.startsWith(detail.field) ? `${detail.field}: ${detail.message}` : detail.message;
}
