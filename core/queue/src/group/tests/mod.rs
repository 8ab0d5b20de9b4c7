mod assignor;
mod classic;
mod consumer;
