"""junyanz/pytorch-CycleGAN-and-pix2pix's training iteration, for the benchmark's ``reference-loop`` row.

What a user who did not use ganzoo would run: ``CycleGANModel.optimize_parameters``
(models/cycle_gan_model.py) as written there: ``forward`` (fake_B = G_A(A),
rec_A = G_B(fake_B), fake_A = G_B(B), rec_B = G_A(fake_A), each a call of its
own); the discriminators frozen with ``set_requires_grad``; ``backward_G``
(identity losses at lambda_identity, LSGAN MSE against target tensors expanded
to the prediction, L1 cycle losses); the generators' step; then
``backward_D_A`` and ``backward_D_B`` on fakes from the ``ImagePool``s
(util/image_pool.py: fills to pool_size, then per image a 50% swap with a
random stored one), each ``(loss_real + loss_fake) * 0.5`` backwarded on its
own, and the discriminators' step. Optimizers as there: torch's default Adam
over ``itertools.chain`` of the two generators and of the two discriminators.

Networks (models/networks.py): ``ResnetGenerator`` and ``NLayerDiscriminator``
with instance norm (affine=False, track_running_stats=False, so convolutions
keep their biases), reflection padding, no dropout, ``init_type='normal'``
N(0, init_gain). Eager fp32 NCHW, cuDNN autotuning on (``BaseModel.__init__``
sets ``torch.backends.cudnn.benchmark = True``).

Left out: the data loader (batches arrive on the device), the visualiser, the
loss reads every ``print_freq`` iterations, and the learning-rate schedulers,
which the reference steps once per epoch (``update_learning_rate`` in
train.py), not per iteration.
"""

from __future__ import annotations

import itertools
import random

import torch
from torch import nn

from ganzoo.api import ReferenceLoop


def _inorm(c):
    return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)


class RefResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _inorm(dim),
                                        nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True),
                                        _inorm(dim))

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, n_blocks):
        super().__init__()
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, padding=0, bias=True), _inorm(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                      _inorm(ngf * mult * 2), nn.ReLU(True)]
        model += [RefResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                         bias=True), _inorm(ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class RefNLayerDiscriminator(nn.Module):
    def __init__(self, input_nc, ndf, n_layers=3):
        super().__init__()
        seq = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True), _inorm(ndf * mult),
                    nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True), _inorm(ndf * mult),
                nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def init_net(net: nn.Module, init_gain: float) -> nn.Module:
    """networks.init_weights with init_type 'normal': Conv/Linear weights N(0, gain), biases 0."""

    def init_func(m):
        classname = m.__class__.__name__
        if hasattr(m, "weight") and (classname.find("Conv") != -1 or classname.find("Linear") != -1):
            nn.init.normal_(m.weight.data, 0.0, init_gain)
            if hasattr(m, "bias") and m.bias is not None:
                nn.init.constant_(m.bias.data, 0.0)
        elif classname.find("BatchNorm2d") != -1:
            nn.init.normal_(m.weight.data, 1.0, init_gain)
            nn.init.constant_(m.bias.data, 0.0)

    net.apply(init_func)
    return net


class ImagePool:
    """util/image_pool.py: the newest fakes while it fills, then per image a 50% swap with a stored one.

    ``rng`` is the ``random`` module there; a seeded ``random.Random`` here keeps bench runs alike.
    """

    def __init__(self, pool_size: int, rng=random):
        self.pool_size, self.rng = pool_size, rng
        if self.pool_size > 0:
            self.num_imgs = 0
            self.images = []

    def query(self, images):
        if self.pool_size == 0:
            return images
        return_images = []
        for image in images:
            image = torch.unsqueeze(image.data, 0)
            if self.num_imgs < self.pool_size:
                self.num_imgs = self.num_imgs + 1
                self.images.append(image)
                return_images.append(image)
            else:
                p = self.rng.uniform(0, 1)
                if p > 0.5:
                    random_id = self.rng.randint(0, self.pool_size - 1)  # randint is inclusive
                    tmp = self.images[random_id].clone()
                    self.images[random_id] = image
                    return_images.append(tmp)
                else:
                    return_images.append(image)
        return torch.cat(return_images, 0)


class GANLoss(nn.Module):
    """networks.GANLoss with gan_mode 'lsgan': MSE against a target tensor expanded to the prediction."""

    def __init__(self, target_real_label=1.0, target_fake_label=0.0):
        super().__init__()
        self.register_buffer("real_label", torch.tensor(target_real_label))
        self.register_buffer("fake_label", torch.tensor(target_fake_label))
        self.loss = nn.MSELoss()

    def get_target_tensor(self, prediction, target_is_real):
        target_tensor = self.real_label if target_is_real else self.fake_label
        return target_tensor.expand_as(prediction)

    def __call__(self, prediction, target_is_real):
        return self.loss(prediction, self.get_target_tensor(prediction, target_is_real))


def set_requires_grad(nets, requires_grad=False):
    for net in nets:
        for param in net.parameters():
            param.requires_grad = requires_grad


class CycleGANReferenceLoop(ReferenceLoop):
    """``CycleGANModel.set_input`` + ``optimize_parameters`` at a CycleGAN config, on ``device``.

    Names as there: netG_A maps A to B (ganzoo's G_AB), netD_A judges domain B (ganzoo's D_B).
    """

    source = "junyanz/pytorch-CycleGAN-and-pix2pix models/cycle_gan_model.py"

    def __init__(self, cfg, device: torch.device, seed: int = 0):
        torch.backends.cudnn.benchmark = True  # as BaseModel.__init__ sets it (the bench puts it back afterwards)
        self.cfg = cfg
        nc, blocks = cfg.channels, cfg.blocks()
        self.netG_A = init_net(RefResnetGenerator(nc, nc, cfg.ngf, blocks), cfg.init_gain).to(device)
        self.netG_B = init_net(RefResnetGenerator(nc, nc, cfg.ngf, blocks), cfg.init_gain).to(device)
        self.netD_A = init_net(RefNLayerDiscriminator(nc, cfg.ndf, cfg.n_layers_d), cfg.init_gain).to(device)
        self.netD_B = init_net(RefNLayerDiscriminator(nc, cfg.ndf, cfg.n_layers_d), cfg.init_gain).to(device)
        rng = random.Random(seed)
        self.fake_A_pool, self.fake_B_pool = ImagePool(cfg.pool_size, rng), ImagePool(cfg.pool_size, rng)
        self.criterionGAN = GANLoss().to(device)
        self.criterionCycle = torch.nn.L1Loss()
        self.criterionIdt = torch.nn.L1Loss()
        betas = (cfg.beta1, cfg.beta2)
        self.optimizer_G = torch.optim.Adam(itertools.chain(self.netG_A.parameters(), self.netG_B.parameters()),
                                            lr=cfg.lr, betas=betas)
        self.optimizer_D = torch.optim.Adam(itertools.chain(self.netD_A.parameters(), self.netD_B.parameters()),
                                            lr=cfg.lr, betas=betas)

    def step(self, batch):
        self.real_A, self.real_B = batch["A"], batch["B"]  # set_input's .to(self.device): already there
        self.optimize_parameters()

    def forward(self):
        self.fake_B = self.netG_A(self.real_A)
        self.rec_A = self.netG_B(self.fake_B)
        self.fake_A = self.netG_B(self.real_B)
        self.rec_B = self.netG_A(self.fake_A)

    def backward_D_basic(self, netD, real, fake):
        pred_real = netD(real)
        loss_D_real = self.criterionGAN(pred_real, True)
        pred_fake = netD(fake.detach())
        loss_D_fake = self.criterionGAN(pred_fake, False)
        loss_D = (loss_D_real + loss_D_fake) * 0.5
        loss_D.backward()
        return loss_D

    def backward_D_A(self):
        fake_B = self.fake_B_pool.query(self.fake_B)
        self.loss_D_A = self.backward_D_basic(self.netD_A, self.real_B, fake_B)

    def backward_D_B(self):
        fake_A = self.fake_A_pool.query(self.fake_A)
        self.loss_D_B = self.backward_D_basic(self.netD_B, self.real_A, fake_A)

    def backward_G(self):
        lambda_idt, lambda_A, lambda_B = self.cfg.lambda_identity, self.cfg.lambda_a, self.cfg.lambda_b
        if lambda_idt > 0:
            self.idt_A = self.netG_A(self.real_B)  # G_A should be identity if real_B is fed
            self.loss_idt_A = self.criterionIdt(self.idt_A, self.real_B) * lambda_B * lambda_idt
            self.idt_B = self.netG_B(self.real_A)  # G_B should be identity if real_A is fed
            self.loss_idt_B = self.criterionIdt(self.idt_B, self.real_A) * lambda_A * lambda_idt
        else:
            self.loss_idt_A = 0
            self.loss_idt_B = 0
        self.loss_G_A = self.criterionGAN(self.netD_A(self.fake_B), True)
        self.loss_G_B = self.criterionGAN(self.netD_B(self.fake_A), True)
        self.loss_cycle_A = self.criterionCycle(self.rec_A, self.real_A) * lambda_A
        self.loss_cycle_B = self.criterionCycle(self.rec_B, self.real_B) * lambda_B
        self.loss_G = (self.loss_G_A + self.loss_G_B + self.loss_cycle_A + self.loss_cycle_B + self.loss_idt_A +
                       self.loss_idt_B)
        self.loss_G.backward()

    def optimize_parameters(self):
        self.forward()
        set_requires_grad([self.netD_A, self.netD_B], False)
        self.optimizer_G.zero_grad()
        self.backward_G()
        self.optimizer_G.step()
        set_requires_grad([self.netD_A, self.netD_B], True)
        self.optimizer_D.zero_grad()
        self.backward_D_A()
        self.backward_D_B()
        self.optimizer_D.step()
