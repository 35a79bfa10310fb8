"""Test reference: the authors' ``utils/log_uniform_sampler.py`` sampler class (only its
attributes matter here: ``mem_transformer`` builds one when ``sample_softmax > 0``)."""

import torch


class LogUniformSampler:
    def __init__(self, range_max, n_sample):
        with torch.no_grad():
            self.range_max = range_max
            log_indices = torch.arange(1.0, range_max + 2.0, 1.0).log_()
            self.dist = (log_indices[1:] - log_indices[:-1]) / log_indices[-1]
            self.log_q = (-(-self.dist.double().log1p_() * 2 * n_sample).expm1_()).log_().float()
        self.n_sample = n_sample
