"""The model zoo's classifier head: global average pooling, then one ``nn.Dense`` with bias. The zoo always ran
the Dense in float16 (float16 logits, which its Ascend 310 post-processing read); here ``fp16`` is an option, off
by default (export can switch it on)."""
from mindspore import dtype as mstype
from mindspore import nn, ops


class CommonHead(nn.Cell):
    def __init__(self, num_features, num_classes, fp16=False):
        super().__init__()
        self.num_features = num_features
        self.num_classes = num_classes
        self.fc = nn.Dense(num_features, num_classes, has_bias=True)
        if fp16:
            self.fc.to_float(mstype.float16)

    def construct(self, x, pre_logits=False):
        x = ops.mean(x, (2, 3))
        return x if pre_logits else self.fc(x)
