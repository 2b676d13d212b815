// What most browser tests start with: signing in as a person does (in English unless the test
// chose a language), and keys of other roles made through the API as an administrator would.
import { expect, type APIRequestContext, type Page } from '@playwright/test';

export const adminKey = () => process.env.PROMOLENS_ADMIN_KEY!;

/** Opens `path` and signs in there with `key` (the demo's admin key by default), then waits
 * until the console took the key: the tab keeps it only once the server accepted it, so a reload
 * before that would find the sign-in page again. */
export async function signIn(page: Page, key = adminKey(), path = '/') {
  await page.addInitScript(() => {
    if (!localStorage.getItem('promolens.lang')) localStorage.setItem('promolens.lang', 'en');
  });
  await page.goto(path);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('button', { name: 'Sign out' })).toBeVisible();
}

/** Signs out, then in again with `key`. */
export async function switchKey(page: Page, key: string) {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** A new key of the demo project with `role`, made by its administrator. */
export async function makeKey(request: APIRequestContext, role: string, label: string): Promise<string> {
  const made = await request.post('/v1/projects/demo/keys', {
    headers: { authorization: `Bearer ${adminKey()}` },
    data: { role, label },
  });
  expect(made.status()).toBe(201);
  return (await made.json()).token;
}
