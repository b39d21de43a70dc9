"""Thesis ch. 2 GAN zoo on the 100 embedded LFW faces at 32x32 (no download needed).

Argument: ``variant[,arch=cnn|resnet][,runlocal]`` with variant one of vae, dcgan, wgan, wgan_gp,
sngan (default), sagan.

  faceflax train --config experiments/gan_zoo/lfw.py:sngan --workdir runs/sngan_lfw
  faceflax train --config experiments/gan_zoo/lfw.py:wgan_gp,arch=resnet --workdir runs/wgan_gp_lfw
  faceflax eval --config experiments/gan_zoo/lfw.py:sngan --workdir runs/sngan_lfw
"""

from experiments.gan_zoo.common import data_config, gan_zoo, parse


def get_config(arg=None):
    args = parse(arg)
    return gan_zoo(args.variant, args.arch, args.runlocal, data_config("lfw", 32))
