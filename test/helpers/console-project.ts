// A stack for the console's Chromium tests of one project's runs: a member token of "vision" (and `M`, the
// CLI as that member), a reader of another project, a headless Chromium page signed in as the member, and
// the folder screenshots are kept in (.test-output/console/).
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Test } from 'tap';
import { chromium, type Page } from 'playwright-core';
import { Stack, root } from './stack.js';

const chromiumPath = process.env.TRAINYARD_CHROMIUM ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p)) ?? 'chromium';
export const consoleShots = path.join(root, '.test-output', 'console');

export interface ConsoleProject {
  s: Stack; base: string; member: string; other: string;
  M: (args: string[]) => ReturnType<Stack['cliJson']>;
  /** A new Chromium page signed in as the member; its script errors are collected in pageErrors. */
  signIn: (viewport: { width: number; height: number }) => Promise<Page>;
  pageErrors: string[];
}

export async function consoleProject(t: Test): Promise<ConsoleProject> {
  mkdirSync(consoleShots, { recursive: true });
  const s = await Stack.create(t);
  const base = `http://${s.httpAddress}`;
  const member = (await s.cliJson(['tokens', 'create', '--project', 'vision', '--role', 'member'])).token as string;
  const other = (await s.cliJson(['tokens', 'create', '--project', 'other', '--role', 'reader'])).token as string;
  const pageErrors: string[] = [];
  const signIn = (viewport: { width: number; height: number }) => signedInPage(t, base, member, viewport, pageErrors);
  return { s, base, member, other, M: (args) => s.cliJson([...args, '--token', member]), signIn, pageErrors };
}

/** A headless Chromium page of the console at `base`, signed in with `token`; its script errors go in `pageErrors`. */
export async function signedInPage(t: Test, base: string, token: string, viewport: { width: number; height: number }, pageErrors: string[]): Promise<Page> {
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  const page = await (await browser.newContext({ viewport })).newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${base}/`);
  await page.fill('input[name=token]', token);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=who]');
  return page;
}
