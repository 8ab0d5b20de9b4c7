mod assignor;
