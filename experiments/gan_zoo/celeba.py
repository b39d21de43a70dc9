"""Thesis ch. 2 GAN zoo on CelebA aligned crops at 64x64 or 128x128 (manual download).

Argument: ``variant[,arch=cnn|resnet][,size=64|128][,runlocal]``. CelebA is read through the
TFDS builder in ``faceflax/data/celeba.py`` from your download (see its docstring for the layout):

  faceflax train --config experiments/gan_zoo/celeba.py:sngan,size=64 --workdir runs/sngan_celeba \
      --set data.manual_dir=/data/celeba --set data.data_dir=/data/tfds
"""

from experiments.gan_zoo.common import data_config, gan_zoo, parse


def get_config(arg=None):
    args = parse(arg, size=64)
    if args.size not in (64, 128):
        raise ValueError(f"celeba config: size must be 64 or 128, got {args.size!r}")
    return gan_zoo(args.variant, args.arch, args.runlocal, data_config("celeba", args.size))
