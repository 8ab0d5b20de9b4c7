mod assignor;
mod classic;
mod consumer;
mod member;
