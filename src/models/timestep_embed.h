/* timestep_embed.h: the sinusoidal timestep embedding the diffusion
 * transformers (FLUX, SD3 / SD3.5) feed their time MLP, computed as torch's
 * CPU kernels compute it so the transformers meet their references at 1e-5.
 * (The UNet's sdw_timestep_embedding in unet.h is the same formula with libm's expf.) */
#ifndef SDW_MODELS_TIMESTEP_EMBED_H
#define SDW_MODELS_TIMESTEP_EMBED_H

/* out[i] = cos(t f_i) for i < dim / 2, out[dim / 2 + i] = sin(t f_i), with
 * f_i = exp(-ln(10000) i / (dim / 2)), all in float32 (BFL's and SAI's
 * timestep_embedding, diffusers' Timesteps with flip_sin_to_cos and shift 0).
 * t is the timestep itself (1000 sigma); an odd dim leaves out[dim - 1] = 0. */
void sdw_time_sinusoid(float t, int dim, float *out);
#endif
