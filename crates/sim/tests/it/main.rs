mod physics;
