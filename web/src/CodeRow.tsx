// One code in the list: its figures, and what the caller's role may do with it (download;
// rename inline and delete with a confirmation for those who write codes).
import { useState } from 'preact/hooks';
import { Api, ApiError, type Schemas } from './api/client';
import type { Translate } from './i18n';
import { saveBlob } from './save';

type Listed = Schemas['ListedCode'];

export function CodeRow({ api, project, code, mayWrite, created, t, onChanged, onOpen }: {
  api: Api;
  project: string;
  code: Listed;
  mayWrite: boolean;
  created: string;
  t: Translate;
  onChanged: () => void;
  onOpen: () => void;
}) {
  const [mode, setMode] = useState<'view' | 'rename' | 'delete'>('view');
  const [name, setName] = useState(code.name);
  const [error, setError] = useState<string | null>(null);
  const url = `/v1/projects/${encodeURIComponent(project)}/codes/${code.id}`;
  const failed = (e: unknown) => setError(e instanceof ApiError || e instanceof Error ? e.message : String(e));

  const download = async () => {
    try {
      const extension = code.content_type === 'image/jpeg' ? 'jpg' : 'png';
      saveBlob(await api.blob(`${url}/image`), `${code.id}-${code.name}.${extension}`);
    } catch (e) {
      failed(e);
    }
  };
  const rename = async (event: Event) => {
    event.preventDefault();
    try {
      await api.send('PATCH', url, { name });
      setMode('view');
      onChanged();
    } catch (e) {
      failed(e);
    }
  };
  const remove = async () => {
    try {
      await api.send('DELETE', url);
      onChanged();
    } catch (e) {
      failed(e);
    }
  };

  return (
    <>
      <tr>
        <td>
          {mode === 'rename' ? (
            <form class="inline" onSubmit={rename}>
              <label class="visually-hidden" for={`rename-${code.id}`}>
                {t('row.newName')}
              </label>
              <input id={`rename-${code.id}`} value={name} onInput={(e) => setName(e.currentTarget.value)} required maxLength={100} />
              <button type="submit">{t('row.save')}</button>
              <button type="button" onClick={() => setMode('view')}>
                {t('row.cancel')}
              </button>
            </form>
          ) : (
            <button type="button" class="link" onClick={onOpen}>
              {code.name}
            </button>
          )}
        </td>
        <td data-label={t('codes.kind')}>{code.kind}</td>
        <td data-label={t('codes.page')}>{code.page}</td>
        <td data-label={t('codes.source')}>{code.utm.source ?? ''}</td>
        <td data-label={t('codes.campaign')}>{code.utm.campaign ?? ''}</td>
        <td data-label={t('codes.created')}>{created}</td>
        <td class="number" data-label={t('codes.newUsers7')}>{code.past_7_days.new_users}</td>
        <td class="row-actions">
          <button type="button" onClick={download} aria-label={t('row.downloadOf', { name: code.name })}>
            {t('row.download')}
          </button>
          {mayWrite && mode === 'view' && (
            <>
              <button type="button" onClick={() => setMode('rename')} aria-label={t('row.renameOf', { name: code.name })}>
                {t('row.rename')}
              </button>
              <button type="button" onClick={() => setMode('delete')} aria-label={t('row.deleteOf', { name: code.name })}>
                {t('row.delete')}
              </button>
            </>
          )}
        </td>
      </tr>
      {(mode === 'delete' || error) && (
        <tr>
          <td colSpan={8}>
            {mode === 'delete' && (
              <div class="confirm" role="alertdialog" aria-label={t('row.deleteOf', { name: code.name })}>
                <p>{t('row.deleteWhat', { name: code.name })}</p>
                <button type="button" class="danger" onClick={remove}>
                  {t('row.deleteConfirm')}
                </button>
                <button type="button" onClick={() => setMode('view')}>
                  {t('row.keep')}
                </button>
              </div>
            )}
            {error && (
              <p class="error" role="alert">
                {error}
              </p>
            )}
          </td>
        </tr>
      )}
    </>
  );
}
