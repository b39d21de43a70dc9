"""Shared knobs of the chapter-2 configs; each dataset file picks the data and calls ``gan_zoo``."""

from ml_collections import ConfigDict, config_dict

from faceflax.config import parse_arg

VARIANTS = ("vae", "dcgan", "wgan", "wgan_gp", "sngan", "sagan")
ARCHS = ("cnn", "resnet")


def adam(learning_rate: float, b1: float, b2: float) -> ConfigDict:
    return ConfigDict(dict(name="adam", learning_rate=learning_rate, b1=b1, b2=b2))


def parse(arg: str | None, **extra):
    """``variant[,arch=cnn|resnet][,runlocal][,extra=...]`` -> namespace, validated."""
    args = parse_arg(arg, variant="sngan", arch="cnn", runlocal=False, **extra)
    if args.variant not in VARIANTS:
        raise ValueError(f"unknown gan_zoo variant {args.variant!r}; use one of {VARIANTS}")
    if args.arch not in ARCHS:
        raise ValueError(f"unknown arch {args.arch!r}; use one of {ARCHS}")
    return args


def gan_zoo(variant: str, arch: str, runlocal: bool, data: ConfigDict) -> ConfigDict:
    """The config of one chapter-2 variant; ``runlocal`` shrinks it to seconds on a laptop CPU."""
    c = ConfigDict()
    c.seed = 0
    c.model = "faceflax.methods.gan_zoo"
    c.data = data
    c.batch_size = 64
    c.total_steps = 20_000

    m = c.method = ConfigDict()
    m.kind = "vae" if variant == "vae" else "gan"
    m.arch = arch
    m.latent_dim = 128
    m.loss = {"dcgan": "nonsaturating", "wgan": "wasserstein", "wgan_gp": "wasserstein"}.get(variant, "hinge")
    m.n_critic = 5 if variant in ("wgan", "wgan_gp") or (variant == "sngan" and arch == "resnet") else 1
    m.gp_weight = 10.0 if variant == "wgan_gp" else 0.0  # thesis Algorithm 4: lambda = 10
    m.clip_value = 0.01 if variant == "wgan" else 0.0  # thesis Algorithm 3: c = 0.01
    m.kl_weight = 1.0  # C of thesis eq. 2.18
    m.spectral_norm_d = variant in ("sngan", "sagan")
    m.spectral_norm_g = variant == "sagan"
    m.attention_resolution = data.image_size // 2 if variant == "sagan" else 0
    # Miyato et al. 2018, Table 3 and Figure 8, for 32x32; one more stage per octave above.
    extra = data.image_size // 64
    m.g_channels = (512,) * extra + (512, 256, 128, 64)
    m.d_channels = (64, 128, 256) + (512,) * extra + (512,)
    m.g_features = 256
    m.d_features = 128

    c.optimizers = ConfigDict()
    if variant == "vae":
        c.optimizers.encoder = adam(1e-3, 0.9, 0.999)
        c.optimizers.decoder = adam(1e-3, 0.9, 0.999)
    elif variant == "wgan":  # thesis Algorithm 3: RMSProp, alpha = 5e-5
        c.optimizers.generator = ConfigDict(dict(name="rmsprop", learning_rate=5e-5))
        c.optimizers.discriminator = ConfigDict(dict(name="rmsprop", learning_rate=5e-5))
    elif variant == "wgan_gp":  # thesis Algorithm 4: Adam 1e-4, betas (0, 0.9)
        c.optimizers.generator = adam(1e-4, 0.0, 0.9)
        c.optimizers.discriminator = adam(1e-4, 0.0, 0.9)
    elif variant == "sagan":  # two time-scale update rule of SAGAN
        c.optimizers.generator = adam(1e-4, 0.0, 0.9)
        c.optimizers.discriminator = adam(4e-4, 0.0, 0.9)
    elif arch == "resnet":  # SN-GAN ResNet: n_dis = 5, Adam 2e-4, betas (0, 0.9)
        c.optimizers.generator = adam(2e-4, 0.0, 0.9)
        c.optimizers.discriminator = adam(2e-4, 0.0, 0.9)
    else:  # DCGAN and SN-GAN standard CNN: Adam 2e-4, betas (0.5, 0.999)
        c.optimizers.generator = adam(2e-4, 0.5, 0.999)
        c.optimizers.discriminator = adam(2e-4, 0.5, 0.999)

    c.ema = ConfigDict(dict(decay=0.999, networks=() if variant == "vae" else ("generator",)))
    # True draws sharded random arrays without materialising them whole on each device (for
    # FSDP-sharded giant parameters) but multiplies XLA's CPU compile time; values are the same
    # for every mesh either way.
    c.partitionable_rng = False
    c.mesh = (("data", -1),)
    c.sharding_rules = ()
    c.log_every = 50
    c.sample_every = 1000
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.num_samples = 64
    # Published FIDs: --set eval.features=faceflax.metrics.features:inception_features --set eval.weights=PATH
    c.eval = ConfigDict(dict(num_samples=1000, features="faceflax.metrics.features:pixel_features", weights=""))

    if runlocal:
        c.batch_size = 8
        c.total_steps = 4
        m.g_channels = tuple(ch // 8 for ch in m.g_channels)
        m.d_channels = tuple(ch // 8 for ch in m.d_channels)
        m.g_features, m.d_features = 32, 16
        c.log_every, c.sample_every, c.checkpoint_every = 1, 2, 2
        c.num_samples = 16
        c.eval.num_samples = 32
    return c


def data_config(name: str, image_size: int, split: str = "train") -> ConfigDict:
    """Data section; ``data_dir`` / ``manual_dir`` only matter for TFDS datasets."""
    return ConfigDict(
        dict(
            name=name,
            image_size=image_size,
            split=split,
            data_dir=config_dict.placeholder(str),
            manual_dir=config_dict.placeholder(str),
        )
    )
