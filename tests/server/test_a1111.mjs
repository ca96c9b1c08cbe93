// test_a1111.mjs: the AUTOMATIC1111 dialect as its clients use it:
// txt2img (batch and n_iter, A1111 sampler names), img2img, inpainting with
// an inverted mask, /progress polled while a txt2img call is in flight on
// another connection, /interrupt, the listing routes and options.
import { assert, run, startServer, json, decodePNG, assertNotFlat, assertError, inputB64, sleep } from './lib.mjs';

const srv = await startServer(['--step-delay-ms', '30']);

function images(res, n, w, h) {
  assert.equal(res.status, 200, JSON.stringify(res.data));
  assert.equal(res.data.images.length, n);
  const info = JSON.parse(res.data.info);
  res.data.images.forEach((b64, i) => {
    const img = decodePNG(Buffer.from(b64, 'base64'));
    assert.equal(img.width, w);
    assert.equal(img.height, h);
    assertNotFlat(img);
    assert.equal(img.text.parameters, info.infotexts[i]);
  });
  return info;
}

await run([
  ['txt2img: batch_size 2 x n_iter 2, "DPM++ 2M Karras"', async () => {
    const res = await json(srv, 'POST', '/sdapi/v1/txt2img', {
      prompt: 'a dog', negative_prompt: 'cat', seed: 7, steps: 4, cfg_scale: 5, width: 64, height: 64,
      sampler_name: 'DPM++ 2M Karras', batch_size: 2, n_iter: 2, restore_faces: false, send_images: true,
    });
    const info = images(res, 4, 64, 64);
    assert.equal(info.seed, 7);
    assert.deepEqual(info.all_seeds, [7, 7, 8, 8]);
    assert.equal(info.steps, 4);
    assert.equal(info.sampler_name, 'DPM++ 2M');
    assert.equal(info.scheduler, 'Karras');
    assert.ok(info.infotexts[0].includes('Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, Seed: 7'));
    assert.ok(info.infotexts[2].includes('Seed: 8'));
    assert.equal(res.data.parameters.prompt, 'a dog');
    assert.equal(res.data.parameters.steps, 4);
    assert.equal(info.interrupted, false);
  }],

  ['txt2img: "Euler a" with the scheduler field and defaults', async () => {
    const res = await json(srv, 'POST', '/sdapi/v1/txt2img', {
      prompt: 'x', steps: 2, width: 64, height: 96, sampler_name: 'Euler a', scheduler: 'Exponential',
    });
    const info = images(res, 1, 64, 96);
    assert.ok(info.infotexts[0].includes('Sampler: Euler a, Schedule type: Exponential'));
    assert.ok(info.seed >= 0);
  }],

  ['img2img with denoising_strength', async () => {
    const res = await json(srv, 'POST', '/sdapi/v1/img2img', {
      prompt: 'a house', init_images: [inputB64('i2i_sd1_euler_s0.5_init.png')], denoising_strength: 0.6,
      steps: 5, seed: 11, resize_mode: 0,
    });
    const info = images(res, 1, 64, 64);
    assert.equal(info.denoising_strength, 0.6);
    assert.ok(info.infotexts[0].includes('Denoising strength: 0.6'));
  }],

  ['img2img inpainting with mask and inpainting_mask_invert', async () => {
    for (const invert of [0, 1]) {
      const res = await json(srv, 'POST', '/sdapi/v1/img2img', {
        prompt: 'a cat', init_images: [inputB64('inp4_sd1_ddim_s0.75_init.png')],
        mask: inputB64('inp4_sd1_ddim_s0.75_mask.png'), inpainting_mask_invert: invert, mask_blur: 4,
        denoising_strength: 0.75, steps: 4, seed: 5, width: 64, height: 64,
      });
      images(res, 1, 64, 64);
    }
  }],

  ['/progress advances while txt2img runs on another connection; /interrupt stops it', async () => {
    const idle = (await json(srv, 'GET', '/sdapi/v1/progress')).data;
    assert.equal(idle.state.job_count, 0);
    assert.equal(idle.progress, 0);
    const call = json(srv, 'POST', '/sdapi/v1/txt2img', { prompt: 'slow', steps: 150, width: 64, height: 64 });
    const seen = [];
    let image = null;
    const t0 = Date.now();
    while (Date.now() - t0 < 120000) {
      const p = (await json(srv, 'GET', '/sdapi/v1/progress')).data;
      if (p.state.sampling_steps) {
        assert.equal(p.state.sampling_steps, 150);
        assert.equal(p.state.job_count, 1);
        assert.ok(p.progress > 0 && p.progress <= 1);
        assert.ok(p.eta_relative >= 0);
        seen.push(p.state.sampling_step);
        image = p.current_image ?? image;
      }
      if (seen.length >= 4 && image) break;
      await sleep(60);
    }
    assert.ok(seen.length >= 4, `saw steps ${seen}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i] >= seen[i - 1]);
    assert.ok(seen.at(-1) > seen[0], `steps did not advance: ${seen}`);
    decodePNG(Buffer.from(image, 'base64'));
    const skipped = (await json(srv, 'GET', '/sdapi/v1/progress?skip_current_image=true')).data;
    assert.equal(skipped.current_image, null);
    assert.equal((await json(srv, 'POST', '/sdapi/v1/interrupt', {})).status, 200);
    const res = await call;
    assert.equal(res.status, 200);
    assert.deepEqual(res.data.images, []);
    const info = JSON.parse(res.data.info);
    assert.equal(info.interrupted, true);
    assert.equal((await json(srv, 'GET', '/sdapi/v1/progress')).data.state.job_count, 0);
  }],

  ['sd-models, samplers, schedulers, loras, options', async () => {
    const models = (await json(srv, 'GET', '/sdapi/v1/sd-models')).data;
    assert.equal(models.length, 1);
    assert.match(models[0].title, /^sd1-tiny\.safetensors \[[0-9a-f]{10}\]$/);
    assert.equal(models[0].model_name, 'sd1-tiny');
    assert.equal(models[0].sha256.slice(0, 10), models[0].hash);
    const samplers = (await json(srv, 'GET', '/sdapi/v1/samplers')).data;
    assert.ok(samplers.some((s) => s.name === 'Euler a' && s.aliases.includes('euler_a')));
    assert.ok(samplers.some((s) => s.name === 'DPM++ 2M'));
    const sch = (await json(srv, 'GET', '/sdapi/v1/schedulers')).data;
    assert.ok(sch.some((s) => s.name === 'karras' && s.label === 'Karras'));
    assert.deepEqual((await json(srv, 'GET', '/sdapi/v1/loras')).data, []);
    const opts = (await json(srv, 'GET', '/sdapi/v1/options')).data;
    assert.equal(opts.sd_model_checkpoint, models[0].title);
    // Naming the loaded model is fine; another needs --models-dir.
    let r = await json(srv, 'POST', '/sdapi/v1/options', { sd_model_checkpoint: models[0].title });
    assert.equal(r.status, 200);
    r = await json(srv, 'POST', '/sdapi/v1/options', { sd_model_checkpoint: 'other.safetensors' });
    assertError(r, 400, /models-dir/);
    assert.equal((await json(srv, 'POST', '/sdapi/v1/options', { CLIP_stop_at_last_layers: 2 })).status, 200);
  }],

  ['bad A1111 requests name the field', async () => {
    assertError(await json(srv, 'POST', '/sdapi/v1/txt2img', { steps: 0 }), 400, /^steps/);
    assertError(await json(srv, 'POST', '/sdapi/v1/txt2img', { sampler_name: 'Nope' }), 400, /^sampler_name: unknown sampler/);
    assertError(await json(srv, 'POST', '/sdapi/v1/txt2img', { width: 500 }), 400, /^width/);
    assertError(await json(srv, 'POST', '/sdapi/v1/txt2img', { n_iter: 9 }), 400, /^n_iter/);
    assertError(await json(srv, 'POST', '/sdapi/v1/img2img', { prompt: 'x' }), 400, /^init_images/);
    assertError(await json(srv, 'POST', '/sdapi/v1/img2img', { init_images: ['!!'] }), 400, /^init_images\[0\]: invalid base64/);
    assertError(await json(srv, 'POST', '/sdapi/v1/txt2img', { prompt: '(x:1.2.3)' }), 400, /^prompt/);
  }],

  ['SIGTERM exits 0', async () => {
    assert.deepEqual(await srv.stop('SIGTERM'), { code: 0, signal: null });
  }],
]);
