"""Train LeNet-5 on the bundled MNIST subset from Python (what `convscope train` does).

    python examples/train_lenet5.py [EPOCHS]
"""

import sys

from convscope import zoo
from convscope.data.preprocess import Standardize
from convscope.train import Trainer, make_optimizer, make_schedule
from convscope.train.datasets import load_split

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
train, test = load_split("mnist_subset", "train"), load_split("mnist_subset", "test")
standardize = Standardize().fit(train.x)          # fitted on the training split only

net = zoo.lenet5(seed=0)
print(net.summary())
optimizer = make_optimizer("momentum", lr=0.02, momentum=0.9, weight_decay=5e-4)
trainer = Trainer(net, optimizer, (train.x, train.y), epochs=epochs, batch_size=64, seed=0,
                  lr_schedule=make_schedule({"type": "cosine"}, start=0.02, epochs=epochs),
                  transform=standardize)
trainer.fit()
result = trainer.evaluate(test.x, test.y)
print(f"test accuracy {100 * (1 - result['top1err']):.2f}% on {len(test.x)} images")
net.save("lenet5.safetensors")                     # Network.load("lenet5.safetensors")
