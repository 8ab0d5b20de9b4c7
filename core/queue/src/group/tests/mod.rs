mod assignor;
mod classic;
