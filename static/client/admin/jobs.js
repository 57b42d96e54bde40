// Import and export jobs on the admin page: start one, then follow admin.jobs.info with a
// live progress bar until it is done or failed.
import { call } from '../api.js';
import { errorNode } from '../errors.js';

const POLL_MS = 500;
const FINISHED = new Set(['done', 'failed']);

const $ = (id) => document.getElementById(id);

export function showJob(prefix, job) {
  $(`${prefix}-job`).hidden = false;
  const bar = $(`${prefix}-progress`);
  bar.max = Math.max(1, job.total || 0);
  bar.value = job.status === 'done' ? bar.max : Math.min(job.done || 0, bar.max);
  bar.dataset.status = job.status;
  const counts = job.total ? ` ${job.done} of ${job.total}` : '';
  $(`${prefix}-status`).textContent = `${job.status}${job.phase ? ` · ${job.phase}` : ''}${counts}`;
  $(`${prefix}-errors`).replaceChildren(
    ...(job.errors || []).map((text) => Object.assign(document.createElement('li'), { textContent: text })),
  );
  $(`${prefix}-done`).hidden = job.status !== 'done';
}

export function showFailure(prefix, error) {
  $(`${prefix}-job`).hidden = false;
  $(`${prefix}-status`).replaceChildren(errorNode(error, 'Could not start:'));
}

export async function follow(prefix, job) {
  let current = job;
  for (;;) {
    showJob(prefix, current);
    if (FINISHED.has(current.status)) return current;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      current = (await call('admin.jobs.info', { job: current.id })).job;
    } catch (error) {
      if (!error.retryable) {
        showFailure(prefix, error);
        return current;
      }
    }
  }
}
