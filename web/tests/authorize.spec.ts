// The authorize step: refused credentials say which is wrong; the mini-program's administrator
// is invited with a one-time link, accepts it, and authorizes.
import { expect, test } from '@playwright/test';
import { adminKey, makeKey, signIn } from './session';

test.beforeEach(async ({ page }) => {
  await page.addInitScript(() => {
    if (!localStorage.getItem('promolens.lang')) localStorage.setItem('promolens.lang', 'en');
  });
});

test('an admin is asked to authorize, invites the mini-program administrator, who authorizes', async ({ page, browser, request }) => {
  const admin = { authorization: `Bearer ${process.env.PROMOLENS_ADMIN_KEY}` };
  // The demo project starts authorized: undo it, as a project that never was.
  expect((await request.delete('/v1/projects/demo/authorization', { headers: admin })).status()).toBe(204);

  // A marketer cannot authorize: they get a message for their administrator, with the link.
  const marketer = await (await browser.newContext()).newPage();
  await signIn(marketer, await makeKey(request, 'marketer', 'Li Na, marketing'));
  await expect(marketer.getByText('Only an administrator of this project can authorize it')).toBeVisible();
  await expect(marketer.getByLabel('AppID')).toHaveCount(0);
  await expect(marketer.getByRole('button', { name: 'New code' })).toHaveCount(0);
  const message = await marketer.getByLabel('Message to your administrator').inputValue();
  expect(message).toContain('(project demo)');
  const consoleLink = message.match(/https?:\/\/\S+\//)![0];
  expect(new URL(consoleLink).origin).toBe(new URL(process.env.PROMOLENS_CONSOLE_URL!).origin);

  await signIn(page, adminKey(), consoleLink);
  await expect(page.getByRole('heading', { name: 'Authorize the mini-program' })).toBeVisible();

  await page.getByLabel('AppID').fill('wx0123456789abcdef');
  await page.getByLabel('AppSecret').fill('wrong');
  await page.getByRole('button', { name: 'Authorize', exact: true }).click();
  await expect(page.getByRole('alert')).toHaveText('WeChat refused this AppSecret for this AppID.');

  await page.getByRole('button', { name: 'Not the mini-program’s administrator? Invite them' }).click();
  const link = await page.getByLabel('Invitation link').inputValue();
  expect(link).toMatch(/\/#\/accept\/pli_/);

  // The invitee, in a browser of their own.
  const invitee = await (await browser.newContext()).newPage();
  await invitee.addInitScript(() => localStorage.setItem('promolens.lang', 'en'));
  await invitee.goto(link);
  await invitee.getByLabel('Your name').fill('Mini-program admin');
  await invitee.getByRole('button', { name: 'Accept' }).click();
  await expect(invitee.getByText('Your key, shown this once')).toBeVisible();
  await invitee.getByRole('button', { name: 'Continue to the console' }).click();
  await expect(invitee.getByText('demo · Administrator')).toBeVisible();
  await invitee.getByLabel('AppID').fill('wx0123456789abcdef');
  await invitee.getByLabel('AppSecret').fill('demo-secret');
  await invitee.getByRole('button', { name: 'Authorize', exact: true }).click();
  await expect(invitee.getByText('Authorized mini-program: wx0123456789abcdef')).toBeVisible();
  // The link works once.
  const again = await (await browser.newContext()).newPage();
  await again.goto(link);
  await again.getByRole('button', { name: 'Accept' }).click();
  await expect(again.getByRole('alert')).toContainText('The invitation was not accepted');
});
