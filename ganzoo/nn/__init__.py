"""Layers, GAN losses and regularisers shared by plugins."""
