// The owner/admin page: import a Slack export zip, export this team.
import { call, upload } from '../api.js';
import { follow, showFailure } from './jobs.js';

const $ = (id) => document.getElementById(id);

$('import-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const file = $('import-file').files[0];
  if (!file) return;
  const form = new FormData();
  form.append('file', file);
  const button = event.target.querySelector('button');
  button.disabled = true;
  try {
    const { job } = await upload('admin.teams.import', form);
    const finished = await follow('import', job);
    document.querySelector('#import-done .job-domain').textContent = finished.domain || '';
  } catch (error) {
    showFailure('import', error);
  } finally {
    button.disabled = false;
  }
});

$('export-start').addEventListener('click', async (event) => {
  event.target.disabled = true;
  try {
    const { job } = await call('admin.teams.export');
    const finished = await follow('export', job);
    if (finished.status === 'done' && finished.download_url) $('export-download').href = finished.download_url;
  } catch (error) {
    showFailure('export', error);
  } finally {
    event.target.disabled = false;
  }
});
